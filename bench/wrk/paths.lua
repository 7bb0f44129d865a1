-- wrk script of bench/run.sh: cycles through the request paths listed, one per line, in the
-- file named by WRK_PATHS (each thread from its own offset). When WRK_EXPECT is set, it also
-- checks every answer (status 200 and a body containing WRK_EXPECT) and prints the count of
-- wrong ones as "WRONG_ANSWERS n" at the end. The same script drives nginx and superpeer, so
-- both pay the same cost for it.

local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do
  if #line > 0 then
    paths[#paths + 1] = line
  end
end

local expect = os.getenv("WRK_EXPECT")
if expect == "" then
  expect = nil
end

local threads = {}
local requests = {}
local next_request = 1
bad = 0
offset = 0

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  for k = 1, #paths do
    requests[k] = wrk.format("GET", paths[k])
  end
  next_request = (offset % #paths) + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then
    next_request = 1
  end
  return r
end

if expect then
  response = function(status, headers, body)
    if status ~= 200 or not string.find(body, expect, 1, true) then
      bad = bad + 1
    end
  end
end

function done(summary, latency, reqs)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + (t:get("bad") or 0)
  end
  io.write(string.format("WRONG_ANSWERS %d\n", total))
end
