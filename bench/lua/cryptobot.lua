-- POST signed CryptoBot invoice_paid updates from a file of `orderId<TAB>signature<TAB>body` lines
-- (bench/seed_events.py cryptobot). Each thread takes every n-th line, so threads never send the same body.
-- args: bodies file, number of threads.
-- With the bodies of a new-webhooks run every request is a new payment (one fulfilment each); with the
-- lines of orders already paid (the repeat run) every request is a repeat. Past the end the lines cycle.
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

function init(args)
   local path, count = args[1], tonumber(args[2])
   requests = {}
   local line_number = 0
   for line in io.lines(path) do
      if line ~= "" then
         if line_number % count == thread_number - 1 then
            local _, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
            requests[#requests + 1] = wrk.format("POST", "/webhook/cryptobot", {
               ["Content-Type"] = "application/json",
               ["Crypto-Pay-Api-Signature"] = signature,
            }, body)
         end
         line_number = line_number + 1
      end
   end
   sent = 0
end

function request()
   sent = sent + 1
   return requests[(sent - 1) % #requests + 1]
end
