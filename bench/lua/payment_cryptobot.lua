-- POST /api/payment for CryptoBot (a local fake Crypto Pay answers createInvoice), a new orderId per request.
-- args: bearer token, run label.
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

function init(args)
   token, run = args[1], args[2]
   counter = 0
   wrk.headers["Authorization"] = "Bearer " .. token
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local body = string.format(
      '{"amount": "1.5", "currency": "USDT", "provider": "cryptobot", "orderId": "pay-%s-%d-%d", ' ..
      '"telegramId": 700000001, "credit": 100}', run, thread_number, counter)
   return wrk.format("POST", "/api/payment", nil, body)
end
