-- wrk script for `make bench`: POST the bodies of a file (one JSON document per line) in
-- turn, and print one JSON line with requests/s, p50 and p99 latency (ms) and errors.
--   wrk -t1 -c8 -d10s --latency -s bench/wrk_post.lua http://127.0.0.1:8000/v1/suggest -- bodies.jsonl [SKIP]
-- SKIP: start after that many bodies (the ones a warm-up run already sent).
local bodies, i = {}, 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  i = tonumber(args[2] or "0") % #bodies
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"rps": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d, "requests": %d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout, summary.requests))
end
