"""Reading knowledge-base sources, cleaning HTML/Markdown to text, chunking, writing index bundles."""
