// IDX reading and writing: the round trip, and a distinct error for each way a file can be wrong.
import Foundation
import MNIST
import TestSupport
import XCTest

final class IDXTests: XCTestCase {
    func testRoundTripRawAndGzip() throws {
        let directory = try TemporaryDirectory("idx")
        let train = TinyDataset.images(count: 30, seed: 7)
        let test = TinyDataset.images(count: 12, seed: 8)
        for gzip in [false, true] {
            let folderURL = directory.file(gzip ? "gz" : "raw")
            let pins = try TinyDataset.write(train: train, test: test, to: folderURL, gzip: gzip)
            let loaded = try DatasetFolder(url: folderURL, pins: pins).load()
            XCTAssertEqual(loaded.train, train)
            XCTAssertEqual(loaded.test, test)
        }
    }

    func testUnpinnedFolderLogsEveryHash() throws {
        let directory = try TemporaryDirectory("idx")
        let pins = try TinyDataset.write(
            train: TinyDataset.images(count: 5), test: TinyDataset.images(count: 3), to: directory.url)
        var notes: [String] = []
        _ = try DatasetFolder(url: directory.url, pins: pins).load { notes.append($0) }
        XCTAssertEqual(notes.count, 4)
        for file in pins.files {
            XCTAssertTrue(notes.contains { $0.contains(file.name) && $0.contains(file.sha256) }, "\(notes)")
        }
    }

    func testPinnedFolderRejectsFilesThatAreNotTheOfficialOnes() throws {
        let directory = try TemporaryDirectory("idx")
        try TinyDataset.write(
            train: TinyDataset.images(count: 5), test: TinyDataset.images(count: 3), to: directory.url)
        _ = FileManager.default.createFile(atPath: directory.file(DatasetFolder.marker).path, contents: Data())
        XCTAssertThrowsError(try DatasetFolder(url: directory.url).load()) { error in
            guard let mismatch = error as? PinMismatch else { return XCTFail("\(error)") }
            XCTAssertEqual(mismatch.expected, DatasetPins.mnist.trainImages.sha256)
            XCTAssertTrue(mismatch.description.contains("train-images-idx3-ubyte"))
        }
    }

    func testMissingFilesNameTheFetchCommand() throws {
        let directory = try TemporaryDirectory("idx")
        XCTAssertThrowsError(try DatasetFolder(url: directory.url).load()) { error in
            XCTAssertTrue("\(error)".contains("mnist fetch"), "\(error)")
            XCTAssertTrue("\(error)".contains("t10k-labels-idx1-ubyte"), "\(error)")
        }
    }

    // MARK: - Each corruption has its own error

    private func imageBytes(count: Int = 4) -> Data { IDX.imageFileBytes(TinyDataset.images(count: count)) }
    private func labelBytes(count: Int = 4) -> Data { IDX.labelFileBytes(TinyDataset.images(count: count)) }

    func testWrongMagic() {
        var data = imageBytes()
        data[3] = 0x01  // 2049: a label magic in an image file
        XCTAssertThrowsError(try IDX.parseImages(data, file: "f")) {
            XCTAssertEqual($0 as? IDXError, .badMagic(file: "f", expected: IDX.imageMagic, found: IDX.labelMagic))
        }
    }

    func testTruncatedImagesAndTrailingBytes() {
        let data = imageBytes()
        XCTAssertThrowsError(try IDX.parseImages(data.dropLast(10), file: "f")) {
            XCTAssertEqual($0 as? IDXError, .wrongLength(file: "f", expected: data.count, found: data.count - 10))
            XCTAssertTrue("\($0)".contains("truncated"))
        }
        XCTAssertThrowsError(try IDX.parseImages(data + Data([0]), file: "f")) {
            XCTAssertEqual($0 as? IDXError, .wrongLength(file: "f", expected: data.count, found: data.count + 1))
        }
        XCTAssertThrowsError(try IDX.parseImages(data.prefix(9), file: "f")) {
            XCTAssertEqual($0 as? IDXError, .wrongLength(file: "f", expected: 16, found: 9))
        }
    }

    func testZeroSizedImagesAreRejected() {
        var data = imageBytes(count: 0)
        data[11] = 0  // rows = 0
        XCTAssertThrowsError(try IDX.parseImages(data, file: "f")) {
            guard case .badDimensions? = $0 as? IDXError else { return XCTFail("\($0)") }
        }
    }

    func testLabelTen() {
        var data = labelBytes()
        data[8 + 2] = 10
        XCTAssertThrowsError(try IDX.parseLabels(data, file: "f")) {
            XCTAssertEqual($0 as? IDXError, .labelOutOfRange(file: "f", index: 2, label: 10))
        }
    }

    func testCountMismatch() throws {
        let directory = try TemporaryDirectory("idx")
        try imageBytes(count: 4).write(to: directory.file("images"))
        try labelBytes(count: 3).write(to: directory.file("labels"))
        XCTAssertThrowsError(try IDX.read(images: directory.file("images"), labels: directory.file("labels"))) {
            XCTAssertEqual(
                $0 as? IDXError,
                .countMismatch(
                    images: directory.file("images").path, imageCount: 4, labels: directory.file("labels").path,
                    labelCount: 3))
        }
    }

    func testTruncatedGzip() throws {
        let directory = try TemporaryDirectory("idx")
        let compressed = try Gzip.compress(imageBytes(count: 50))
        try compressed.prefix(compressed.count / 2).write(to: directory.file("cut.gz"))
        XCTAssertThrowsError(try IDX.contents(of: directory.file("cut.gz"))) {
            guard case .badGzip(_, let reason)? = $0 as? IDXError else { return XCTFail("\($0)") }
            XCTAssertTrue(reason.contains("truncated"), reason)
        }
    }

    func testGzipIsRecognisedByContentNotName() throws {
        let directory = try TemporaryDirectory("idx")
        let raw = imageBytes()
        try Gzip.compress(raw).write(to: directory.file("no-extension"))
        try raw.write(to: directory.file("looks-like.gz"))
        XCTAssertEqual(try IDX.contents(of: directory.file("no-extension")), raw)
        XCTAssertEqual(try IDX.contents(of: directory.file("looks-like.gz")), raw)
    }

    func testLoadingTheRealTrainingSetIsFast() throws {
        let folder: DatasetFolder
        do {
            folder = try requireRealMNIST()
        } catch let missing as RealMNISTMissing where !isContinuousIntegration {
            throw XCTSkip("\(missing)")
        }
        let start = Date()
        let data = try folder.load()
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(data.train.count, 60_000)
        XCTAssertEqual(data.test.count, 10_000)
        print("loaded and verified the real MNIST in \(String(format: "%.3f", seconds)) s")
    }
}

final class ShimTests: XCTestCase {
    /// zlib: compressing and decompressing gives back the same bytes, and the stream really is gzip.
    func testGzipRoundTrip() throws {
        let text = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 31 % 251) })
        let compressed = try Gzip.compress(text)
        XCTAssertTrue(Gzip.isCompressed(compressed))
        XCTAssertLessThan(compressed.count, text.count)
        XCTAssertEqual(try Gzip.decompress(compressed), text)
        XCTAssertTrue(Gzip.zlibVersion.hasPrefix("1."), Gzip.zlibVersion)
    }

    /// Two gzip members back to back decompress to the two payloads concatenated (as `gzip -d` does).
    func testConcatenatedGzipMembers() throws {
        let first = Data("hello ".utf8), second = Data("world".utf8)
        XCTAssertEqual(try Gzip.decompress(Gzip.compress(first) + Gzip.compress(second)), first + second)
    }

    func testCorruptGzip() throws {
        var compressed = try Gzip.compress(Data(repeating: 7, count: 1000))
        compressed[12] ^= 0xff
        XCTAssertThrowsError(try Gzip.decompress(compressed))
    }
}
