-- POST signed T-Bank notifications from a file of one JSON body per line (bench/seed_events.py orders).
-- Each thread takes every n-th line, so threads never send the same body.
-- args: bodies file, number of threads, "unique" or "dup".
-- unique: every request is a new payment (one fulfilment each).
-- dup: every second request repeats a body this thread sent LAG bodies earlier (already stored, so the
-- duplicate path), or the current one while fewer than LAG were sent: exactly 50 % duplicates.
local LAG = 50
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

function init(args)
   local path, count = args[1], tonumber(args[2])
   duplicates = args[3] == "dup"
   bodies = {}
   local line_number = 0
   for line in io.lines(path) do
      if line ~= "" then
         if line_number % count == thread_number - 1 then
            bodies[#bodies + 1] = line
         end
         line_number = line_number + 1
      end
   end
   sent = 0
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   sent = sent + 1
   local index = sent
   if duplicates then
      index = math.floor((sent + 1) / 2)
      if sent % 2 == 0 and index > LAG then
         index = index - LAG
      end
   end
   -- Past the end the bodies repeat (duplicates); run_wrk.py reports it when that happens.
   local body = bodies[(index - 1) % #bodies + 1]
   return wrk.format("POST", "/webhook/sbp/tbank", nil, body)
end
