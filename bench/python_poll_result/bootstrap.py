"""A Lambda Runtime API client for the Python baseline, doing what the AWS Python runtime
interface client (awslambdaric) does:

1. init: import the handler module named by `_HANDLER` (`module.function`, default
   `handler.lambda_handler`) from `LAMBDA_TASK_ROOT` (default: this folder); an import
   failure is reported to `POST /runtime/init/error` and the process exits;
2. loop: `GET /runtime/invocation/next`, call the handler with the event and a context,
   `POST /runtime/invocation/<id>/response` with the JSON result, or
   `POST /runtime/invocation/<id>/error` with `{errorMessage, errorType, stackTrace}` and the
   `Lambda-Runtime-Function-Error-Type` header, `errorType` being the exception's class name.

One keep-alive HTTP connection to `AWS_LAMBDA_RUNTIME_API`, as the real client keeps.
"""

import http.client
import importlib
import json
import os
import sys
import time
import traceback

RUNTIME = "/2018-06-01/runtime"


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _error_body(e: BaseException) -> bytes:
    return json.dumps(
        {
            "errorMessage": str(e),
            "errorType": type(e).__name__,
            "requestId": "",
            "stackTrace": traceback.format_tb(e.__traceback__),
        }
    ).encode()


def main():
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80))

    def request(method, path, body=None, headers=None):
        conn.request(method, RUNTIME + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.path.dirname(os.path.abspath(__file__))
    if not os.path.isdir(task_root):
        task_root = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, task_root)
    module_name, _, function_name = (os.environ.get("_HANDLER") or "handler.lambda_handler").rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as e:  # an init failure, reported as Lambda's runtime client does
        error_type = f"Runtime.ImportModuleError: {type(e).__name__}"
        request("POST", "/init/error", _error_body(e), {"Lambda-Runtime-Function-Error-Type": error_type})
        sys.exit(1)

    while True:
        resp, body = request("GET", "/invocation/next")
        if resp.status != 200:
            sys.exit(0)
        headers = dict(resp.getheaders())
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        try:
            result = handler(json.loads(body or b"null"), Context(headers))
            request("POST", f"/invocation/{request_id}/response", json.dumps(result).encode(),
                    {"Content-Type": "application/json"})
        except Exception as e:
            request("POST", f"/invocation/{request_id}/error", _error_body(e),
                    {"Lambda-Runtime-Function-Error-Type": type(e).__name__, "Content-Type": "application/json"})
        sys.stdout.flush()


if __name__ == "__main__":
    main()
