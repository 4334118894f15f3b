"""Drives kist-portable.wasm through kist_wasm on a store directory and
prints one JSON object for tests/tests/hosts.rs to check.
    python check_portable.py KIST_PORTABLE_WASM STORE_DIR"""

import json
import sys

from kist_wasm import KistError, Store


def error_case(call):
    try:
        call()
    except KistError as e:
        return e.case
    raise AssertionError("the call succeeded")


wasm, root = sys.argv[1:]
store = Store(wasm, root)
put = store.put(b"hello from python", labels={"via": "python"})
gone = store.put(b"deleted from python")
store.delete(gone)
print(json.dumps({
    "put": put,
    "info": store.info(put),
    "walked": store.walk(["labels.via==python"]),
    "deleted": error_case(lambda: store.info(gone)),
    "invalid": error_case(lambda: store.put(b"x", expected="sha256:nothex")),
    "noIngest": error_case(lambda: store.status("never-started")),
    "badFilter": error_case(lambda: store.walk(["labels.via=="])),
}))
