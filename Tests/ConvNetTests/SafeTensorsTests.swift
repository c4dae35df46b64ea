// Model files: round trip, and damaged, truncated or foreign files give errors naming the file.
import XCTest
import Foundation
import TestSupport
import ConvNet

final class SafeTensorsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("convnet-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func savedClassic() throws -> (Network, URL) {
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 12)
        let url = directory.appendingPathComponent("model.safetensors")
        try network.save(to: url, metadata: ["input_mean": "0.1307", "note": "quote \" backslash \\ newline \n"])
        return (network, url)
    }

    func testRoundTripKeepsParametersAndMetadata() throws {
        let (network, url) = try savedClassic()
        let (loaded, metadata) = try Network.load(from: url)
        XCTAssertEqual(loaded.architecture, network.architecture)
        XCTAssertEqual(loaded.parameters.map(\.bitPattern), network.parameters.map(\.bitPattern))
        XCTAssertEqual(metadata["input_mean"], "0.1307")
        XCTAssertEqual(metadata["note"], "quote \" backslash \\ newline \n")
        XCTAssertEqual(metadata["format_version"], "1")
        // Layout on disk: header length, JSON, data of exactly 4 bytes per parameter.
        let bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(bytes.count, 8 + headerLength + 4 * 34_826)
        XCTAssertEqual(headerLength % 8, 0)
        // Saving again over the file replaces it and leaves no temporary file behind.
        try network.save(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["model.safetensors"])
    }

    private func assertRejected(_ bytes: [UInt8], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let url = directory.appendingPathComponent("bad-\(label).safetensors")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(bytes)))
        do {
            _ = try Network.load(from: url)
            XCTFail("\(label): loaded a damaged file", file: file, line: line)
        } catch let error as ModelFileError {
            print("\(label): \(error)")
            XCTAssertEqual(error.path, url.path, file: file, line: line)
        } catch {
            XCTFail("\(label): unexpected error type \(error)", file: file, line: line)
        }
    }

    private func file(header: String, data: [UInt8]) -> [UInt8] {
        let headerBytes = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian, Array.init) + headerBytes + data
    }

    func testDamagedTruncatedAndForeignFilesThrow() throws {
        let (_, url) = try savedClassic()
        let good = [UInt8](try Data(contentsOf: url))
        assertRejected([], "empty")
        assertRejected([1, 2, 3], "shorter than length")
        assertRejected(Array(good.prefix(100)), "truncated in header")
        assertRejected(Array(good.dropLast(1)), "truncated by one byte")
        assertRejected(good + [0], "trailing byte")
        assertRejected(Array("\u{89}PNG\r\n\u{1A}\n and then some image bytes".utf8), "PNG")
        assertRejected(Array(repeating: 0xFF, count: 64), "huge header length")
        var damaged = good
        damaged[10] = UInt8(ascii: "!")
        assertRejected(damaged, "damaged JSON")
        var generator = TestGenerator(seed: 41)
        for trial in 0..<20 {
            var random = good
            for _ in 0..<8 {
                random[Int(generator.next() % UInt64(min(random.count, 600)))] = UInt8(
                    truncatingIfNeeded: generator.next())
            }
            let url = directory.appendingPathComponent("random.safetensors")
            XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(random)))
            _ = try? Network.load(from: url)  // must not crash; may load if only data bytes changed
            _ = trial
        }
        assertRejected(file(header: "[1,2]", data: []), "JSON array")
        assertRejected(
            file(header: #"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "F16")
        assertRejected(
            file(
                header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#,
                data: Array(repeating: 0, count: 12)), "offsets vs shape")
        assertRejected(
            file(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            "negative shape")
        assertRejected(
            file(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)),
            "gap")
        assertRejected(
            file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            "no architecture")
        assertRejected(file(header: #"{"__metadata__":{"architecture":"{}"}}"#, data: []), "bad architecture")
        let enormous = Architecture(layers: [
            .flatten, .dense(outputs: 1_000_000), .dense(outputs: 1_000_000), .dense(outputs: 10),
        ]).jsonString()
        let escaped = enormous.replacingOccurrences(of: "\"", with: "\\\"")
        assertRejected(
            file(header: "{\"__metadata__\":{\"architecture\":\"\(escaped)\"}}", data: []), "enormous architecture")
    }

    func testShapeMismatchWithArchitectureIsRejected() throws {
        let network = try Network(architecture: ModelPreset.classic.architecture, seed: 1)
        var tensors = network.namedTensors
        tensors[4] = NamedTensor(name: "dense1.weight", shape: [1600, 10], values: tensors[4].values)
        let url = directory.appendingPathComponent("transposed.safetensors")
        try SafeTensors.write(tensors: tensors, metadata: ["architecture": network.architecture.jsonString()], to: url)
        XCTAssertThrowsError(try Network.load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("dense1.weight"), "\(error)")
        }
        tensors = network.namedTensors
        tensors.removeLast()
        try SafeTensors.write(tensors: tensors, metadata: ["architecture": network.architecture.jsonString()], to: url)
        XCTAssertThrowsError(try Network.load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("missing"), "\(error)")
        }
    }

    func testMissingFileNamesThePath() {
        let url = directory.appendingPathComponent("absent.safetensors")
        XCTAssertThrowsError(try Network.load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("absent.safetensors"))
        }
    }
}
