-- POST a fixed JSON body the size of a T-Bank notification; args: none.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"TerminalKey":"BenchTerminal","OrderId":"bench-floor-order","Success":true,' ..
   '"Status":"CONFIRMED","PaymentId":13660,"ErrorCode":"0","Amount":10000,"CardId":31,' ..
   '"Pan":"500000******0009","ExpDate":"1130","Token":"' .. string.rep("0", 64) .. '"}'
