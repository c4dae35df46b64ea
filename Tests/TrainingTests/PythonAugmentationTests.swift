// PROTOCOL.md's Python worker skeleton, taken from the document itself, augments training images as the
// Swift workers do: its `inputs()` (numpy in float32) against `Augmentation.apply`, on digit-like and
// random images and several keys, epochs and seeds, for whole-pixel shifts, affine transforms and none.
import ConvNet
import Foundation
import Host
import TestSupport
import Training
import XCTest

final class PythonAugmentationTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The first ```python block of PROTOCOL.md.
    private func skeleton() throws -> String {
        let text = try String(
            contentsOf: Self.repository.appendingPathComponent("Sources/DataParallel/PROTOCOL.md"), encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: "```python\n"))
        let end = try XCTUnwrap(text.range(of: "\n```", range: start.upperBound..<text.endIndex))
        return String(text[start.upperBound..<end.lowerBound])
    }

    /// Runs the skeleton's `inputs(images, keys, epoch, configuration)` for each case of `cases.json`
    /// in FOLDER, writing the results one after the other to `out.bin` as little-endian float32. Only
    /// numpy is needed: without pyzmq, empty stand-ins satisfy the skeleton's imports.
    private static let driver = """
        import json, sys, types
        folder = sys.argv[1]
        try:
            import zmq
        except ImportError:
            monitor = types.ModuleType("zmq.utils.monitor")
            monitor.recv_monitor_message = None
            sys.modules.update(
                {"zmq": types.ModuleType("zmq"), "zmq.utils": types.ModuleType("zmq.utils"), "zmq.utils.monitor": monitor})
        sys.path.insert(0, folder)
        import numpy as np
        import worker
        cases = json.load(open(folder + "/cases.json"))
        keys = np.array(cases["keys"], np.int64)      # as the skeleton's answer() passes them
        images = np.fromfile(folder + "/images.bin", np.uint8).reshape(len(keys), -1)
        with open(folder + "/out.bin", "wb") as out:
            for case in cases["cases"]:
                out.write(worker.inputs(images, keys, case["epoch"], case["configuration"]).astype("<f4").tobytes())
        """

    /// 28x28 images with strokes, rings and a bright square reaching the edges, like digits but
    /// harder on the borders, then random bytes (every pixel value).
    private static func images() -> [[UInt8]] {
        let drawn: [[UInt8]] = (0..<4).map { variant in
            let v = Double(variant)
            return (0..<784).map { index in
                let x = Double(index % 28), y = Double(index / 28)
                let ring = abs(((x - 13 - v) * (x - 13 - v) + (y - 12 + v) * (y - 12 + v)).squareRoot() - 6 - v)
                let stroke = abs(x - 0.5 * y - 6 - 2 * v)
                let square = variant == 3 && x > 20 && y > 20
                let value: Double = (ring < 1.5 ? 255 : 0) + (stroke < 1.2 ? 190 : 0) + (square ? 255 : 0) + x
                return UInt8(min(255, value))
            }
        }
        let random = TinyDataset.images(count: 4, seed: 5)
        return drawn + (0..<4).map { Array(random.pixels[($0 * 784)..<(($0 + 1) * 784)]) }
    }

    private static let keys = [0, 1, 2, 3, 4, 1000, 59_999, 1 << 20]

    /// Swift's inputs for `configuration` in `epoch`: what `MicroBatchComputer` trains on.
    private func swiftInputs(_ images: [[UInt8]], configuration: TrainingConfiguration, epoch: Int) -> [Float] {
        let epochSeed = TrainingSeeds.augmentation(configuration.seed, epoch: epoch)
        return zip(images, Self.keys).flatMap { pixels, key -> [Float] in
            guard let augmentation = configuration.augmentation else { return InputNormalization.normalized(pixels) }
            var output = [Float](repeating: .nan, count: pixels.count)
            pixels.withUnsafeBufferPointer { pixels in
                InputNormalization.table.withUnsafeBufferPointer { table in
                    output.withUnsafeMutableBufferPointer { output in
                        augmentation.apply(
                            pixels: pixels, rows: 28, columns: 28, key: key, epochSeed: epochSeed, table: table,
                            output: output)
                    }
                }
            }
            return output
        }
    }

    func testTheDocumentedPythonWorkerAugmentsAsTheSwiftWorkersDo() throws {
        let found = try python3(importing: ["numpy"])
        guard let interpreter = found.path else {
            if isContinuousIntegration { return XCTFail("python3 with numpy: \(found.error)") }
            throw XCTSkip("python3 with numpy is needed (Cluster/setup.sh --test installs it)")
        }
        func configuration(
            seed: UInt64, augment: Bool = true, shift: Double = 2, rotation: Double = 0, scale: Double = 0,
            shear: Double = 0, elastic: Double = 0
        ) -> TrainingConfiguration {
            var configuration = TrainingConfiguration()
            (configuration.seed, configuration.augment) = (seed, augment)
            (configuration.shift, configuration.rotation) = (shift, rotation)
            (configuration.scale, configuration.shear) = (scale, shear)
            configuration.elastic = elastic
            return configuration
        }
        // (epoch, configuration as the coordinator sends it); the affine ones are not whole-pixel shifts.
        let cases: [(epoch: Int, configuration: TrainingConfiguration)] = [
            (0, TrainingConfiguration()),  // the defaults: rotation 10, scale 0.1, shift 2 (affine)
            (0, configuration(seed: 1)),  // whole-pixel shifts of up to 2 (the defaults before)
            (3, configuration(seed: 7, shift: 3)),
            (1, configuration(seed: 2, shift: 8)),
            (0, configuration(seed: 1, shift: 2.5, rotation: 12, scale: 0.1, shear: 8)),
            (2, configuration(seed: 3, shift: 8, rotation: 90, scale: 0.5, shear: 45)),  // every limit
            (5, configuration(seed: 4, shift: 2, rotation: 30)),  // a whole shift, but rotated: affine
            (0, configuration(seed: 1, augment: false)),
            (1, configuration(seed: 5, rotation: 10, scale: 0.1, elastic: 34)),  // elastic distortion
            (4, configuration(seed: 6, shift: 2, elastic: 8)),  // a whole shift, but elastic: sampled
            (2, configuration(seed: 3, shift: 8, rotation: 90, scale: 0.5, shear: 45, elastic: 100)),
        ]
        let images = Self.images()
        let root = try TemporaryDirectory("py-augmentation")
        try skeleton().write(to: root.file("worker.py"), atomically: true, encoding: .utf8)
        try Self.driver.write(to: root.file("driver.py"), atomically: true, encoding: .utf8)
        try Data(images.joined()).write(to: root.file("images.bin"))
        let listed = cases.map { #"{"epoch":\#($0.epoch),"configuration":\#($0.configuration.jsonString())}"# }
        try #"{"keys":\#(Self.keys),"cases":[\#(listed.joined(separator: ","))]}"#.write(
            to: root.file("cases.json"), atomically: true, encoding: .utf8)

        let run = try Subprocess.capture(
            [interpreter, root.file("driver.py").path, root.url.path], timeout: 120)
        XCTAssertEqual(run.status, 0, run.standardError)
        let bytes = try [UInt8](Data(contentsOf: root.file("out.bin")))
        let perCase = images.count * 784
        XCTAssertEqual(bytes.count, cases.count * perCase * 4, "one float32 per pixel of every case")
        guard bytes.count == cases.count * perCase * 4 else { return }
        let python = stride(from: 0, to: bytes.count, by: 4).map { offset in
            Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) })
        }
        for (index, (epoch, configuration)) in cases.enumerated() {
            let swift = swiftInputs(images, configuration: configuration, epoch: epoch)
            let theirs = Array(python[(index * perCase)..<((index + 1) * perCase)])
            let label = "case \(index): epoch \(epoch), \(configuration.jsonString())"
            // Every case bit for bit, the affine ones too (measured: largest difference 0). The map is rounded
            // to float32 before sampling, so even a C library whose cos, sin or tan differ in the last place
            // would almost never change a bit; an operation out of the Swift order changes hundreds.
            let differing = zip(theirs, swift).filter { $0.bitPattern != $1.bitPattern }.count
            let largest = zip(theirs, swift).map { abs($0 - $1) }.max() ?? 0
            XCTAssertEqual(differing, 0, "\(label): values differ by up to \(largest)")
            if let augmentation = configuration.augmentation, !augmentation.isWholePixelShift {
                let plain = InputNormalization.normalized(Array(images.joined()))
                let moved = zip(swift, plain).filter { abs($0 - $1) > 0.1 }.count
                XCTAssertGreaterThan(moved, 1000, "\(label): the images are transformed")
            }
        }
    }
}
