"""kist's portable store component (kist-portable.wasm) from Python, run
by the `wasmtime` package from PyPI.

wasmtime-py returns a WIT error as a value (a `Variant` whose tag is the
case); this module raises `KistError` instead. Byte lists cross the
boundary element by element (about 1.4 MB/s), so use it for control calls
and small blobs; bulk data belongs in a native host.

    store = Store("kist-portable.wasm", "/path/to/store")
    digest = store.put(b"hello", labels={"app": "demo"})
    store.info(digest)["labels"]  # {'app': 'demo'}
"""

import wasmtime
import wasmtime.component as wc

PACKAGE = "kist:content"
VERSION = "0.12.0"


class KistError(Exception):
    """A WIT `error` case: `case` is its name ('not-found', ...), `detail`
    its message when the case carries one."""

    def __init__(self, case, detail=None):
        super().__init__(case if detail is None else f"{case}: {detail}")
        self.case = case
        self.detail = detail


class Store:
    """A kist store on the directory `root`, run by one component instance."""

    def __init__(self, wasm_path, root):
        engine = wasmtime.Engine()
        self._store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.preopen_dir(str(root), "/store")
        self._store.set_wasi(wasi)
        linker = wc.Linker(engine)
        linker.add_wasip2()
        component = wc.Component.from_file(engine, str(wasm_path))
        self._instance = linker.instantiate(self._store, component)

    def _call(self, interface, name, *args):
        """Calls an export of `kist:content/<interface>`; raises KistError
        for a returned error."""
        inst = self._instance
        iface = inst.get_export_index(self._store, f"{PACKAGE}/{interface}@{VERSION}")
        func = inst.get_func(self._store, inst.get_export_index(self._store, name, iface))
        result = func(self._store, *args)
        if isinstance(result, wc.Variant):
            raise KistError(result.tag, result.payload)
        return result

    def put(self, data, expected=None, labels=None, holder=None):
        """Stores `data` in one call and returns its digest."""
        request = wc.Record()
        request.data = bytes(data)
        request.expected = expected
        request.labels = _labels(labels)
        request.holder = holder
        return self._call("ingester", "put", request)

    def info(self, digest):
        """The blob's size and labels, as a dict."""
        info = self._call("store", "info", digest)
        return {
            "digest": info.digest,
            "size": info.size,
            "labels": {label.key: label.value for label in info.labels},
        }

    def delete(self, digest, holder=None):
        """Releases the blob (`default`'s hold, or `holder`'s); returns who
        still holds it."""
        return self._call("store", "delete", digest, holder)

    def walk(self, filters=()):
        """Digests of the blobs matching any of `filters` (containerd syntax)."""
        walker = self._call("store", "walk", list(filters))
        digests = []
        while True:
            batch = self._call("store", "[method]walker.next", walker)
            if not batch:
                return digests
            digests.extend(info.digest for info in batch)

    def status(self, ref):
        """The offset of the ingest `ref`."""
        return self._call("ingester", "status", ref).offset

    def abort(self, ref):
        """Removes the ingest `ref`."""
        self._call("ingester", "abort", ref)


def _labels(labels):
    records = []
    for key, value in (labels or {}).items():
        record = wc.Record()
        setattr(record, "key", key)
        setattr(record, "value", value)
        records.append(record)
    return records
