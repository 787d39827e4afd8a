-- wrk script for scripts/bench.sh: three request mixes and a census of response statuses.
--
--   wrk ... -s scripts/bench/load.lua URL -- get_tasks  TOKENS_FILE [PATH]
--   wrk ... -s scripts/bench/load.lua URL -- post_tasks TOKENS_FILE
--   wrk ... -s scripts/bench/load.lua URL -- login      USERS PASSWORD
--   wrk ... -s scripts/bench/load.lua URL -- refresh    REFRESH_TOKENS_FILE THREADS
--   wrk ... -s scripts/bench/load.lua URL -- signup     PASSWORD
--
-- get_tasks / post_tasks: GET PATH (default /tasks; e.g. /tasks?cursor=... for a deep page) and
-- POST /tasks, the Bearer token taken round-robin from TOKENS_FILE (one access token a line, one
-- per seeded user). login: POST /auth/login as benchN@bench.example with N uniform in 1..USERS.
-- refresh: POST /auth/refresh; each thread owns every THREADS-th refresh token of the file (a
-- token is good for one use) and puts the successor from each answer back in its queue, so
-- every request presents a live token (the file needs at least as many tokens as connections).
-- signup: POST /auth/signup with a new address each time.
--
-- Every response's status is counted (response() hook); done() prints one line
-- "BENCH_JSON {...}" with requests/s, latency percentiles (µs), socket errors and the status
-- census, non-2xx included, for scripts/bench/report.py.

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

local mode
local tokens = {}
local users = 0
local password = ""
local path = "/tasks"
local counter = 0
-- refresh: a FIFO of live refresh tokens, queue[queue_head .. queue_tail - 1] (explicit indices:
-- `#` is undefined on a table with holes).
local queue = {}
local queue_head = 1
local queue_tail = 1
statuses = {}

function init(args)
   mode = args[1]
   if mode == "get_tasks" or mode == "post_tasks" then
      for line in io.lines(args[2]) do
         if #line > 0 then
            table.insert(tokens, line)
         end
      end
      if #tokens == 0 then
         error("no tokens in " .. tostring(args[2]))
      end
      if args[3] and #args[3] > 0 then
         path = args[3]
      end
   elseif mode == "refresh" then
      local nthreads = tonumber(args[3])
      local i = 0
      for line in io.lines(args[2]) do
         if #line > 0 then
            if i % nthreads == (thread_id or 0) then
               queue[queue_tail] = line
               queue_tail = queue_tail + 1
            end
            i = i + 1
         end
      end
      if queue_tail == 1 then
         error("no refresh tokens for thread " .. tostring(thread_id) .. " in " .. tostring(args[2]))
      end
   elseif mode == "signup" then
      password = args[2]
   elseif mode == "login" then
      users = tonumber(args[2])
      password = args[3]
   else
      error("unknown mode " .. tostring(mode))
   end
   start_time = os.time()
   math.randomseed(os.time() * 1000 + (thread_id or 0))
   counter = (thread_id or 0) * 7919
end

function request()
   counter = counter + 1
   if mode == "refresh" then
      -- An empty queue (an answer without a successor) sends a token that cannot be live: it is
      -- answered 401 and counted as non-2xx.
      local token = "none"
      if queue_head < queue_tail then
         token = queue[queue_head]
         queue[queue_head] = nil
         queue_head = queue_head + 1
      end
      local body = string.format('{"refresh_token":"%s"}', token)
      return wrk.format("POST", "/auth/refresh", { ["Content-Type"] = "application/json" }, body)
   end
   if mode == "signup" then
      local email = string.format("s%d-%d-%d@signup.bench.example", start_time, thread_id or 0, counter)
      local body = string.format('{"email":"%s","password":"%s"}', email, password)
      return wrk.format("POST", "/auth/signup", { ["Content-Type"] = "application/json" }, body)
   end
   if mode == "login" then
      local email = string.format("bench%d@bench.example", math.random(1, users))
      local body = string.format('{"email":"%s","password":"%s"}', email, password)
      return wrk.format("POST", "/auth/login", { ["Content-Type"] = "application/json" }, body)
   end
   local token = tokens[(counter % #tokens) + 1]
   if mode == "get_tasks" then
      return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token }, nil)
   end
   local body = string.format('{"title":"bench task %d","description":"made by wrk"}', counter)
   return wrk.format("POST", "/tasks", {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
   }, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if mode == "refresh" and status == 200 then
      local successor = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
      if successor then
         queue[queue_tail] = successor
         queue_tail = queue_tail + 1
      end
   end
end

function done(summary, latency, requests)
   local census = {}
   local answered, ok = 0, 0
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      for status, n in pairs(s) do
         census[status] = (census[status] or 0) + n
         answered = answered + n
         if status >= 200 and status < 300 then
            ok = ok + 1 * n
         end
      end
   end
   local parts = {}
   for status, n in pairs(census) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,"ok_rps":%.1f,'
         .. '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f,"stdev":%.1f},'
         .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"wrk_status_errors":%d,'
         .. '"answered":%d,"non_2xx":%d,"statuses":{%s}}\n',
      summary.requests, seconds, summary.bytes, summary.requests / seconds, ok / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean, latency.stdev,
      e.connect, e.read, e.write, e.timeout, e.status,
      answered, answered - ok, table.concat(parts, ",")))
end
