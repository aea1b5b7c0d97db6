-- wrk script: POST the body in the file named by env BODY_FILE to the path in env BODY_PATH.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.path = os.getenv("BODY_PATH") or "/api/v1/logs"
wrk.headers["Content-Type"] = os.getenv("BODY_TYPE") or "application/json"
