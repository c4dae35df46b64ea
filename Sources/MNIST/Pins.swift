// The four official MNIST files: their standard names, sizes and SHA-256 pins (of the uncompressed
// bytes). Changing a pin here changes what every command accepts as "the real MNIST".
import Crypto
import Foundation

/// One file of an IDX dataset: its standard name and, for MNIST, what its bytes must hash to.
public struct DatasetFile: Sendable, Equatable {
    /// The standard uncompressed name, for example `train-images-idx3-ubyte`.
    public let name: String
    /// Lower-case hex SHA-256 of the uncompressed file.
    public let sha256: String
    /// Size of the uncompressed file in bytes.
    public let size: Int

    public init(name: String, sha256: String, size: Int) {
        self.name = name
        self.sha256 = sha256
        self.size = size
    }
}

/// The pins of a dataset: the four files in a fixed order (train images, train labels, test images, test labels).
public struct DatasetPins: Sendable, Equatable {
    public let trainImages: DatasetFile
    public let trainLabels: DatasetFile
    public let testImages: DatasetFile
    public let testLabels: DatasetFile

    public init(trainImages: DatasetFile, trainLabels: DatasetFile, testImages: DatasetFile, testLabels: DatasetFile) {
        self.trainImages = trainImages
        self.trainLabels = trainLabels
        self.testImages = testImages
        self.testLabels = testLabels
    }

    /// The four files in the fixed order.
    public var files: [DatasetFile] { [trainImages, trainLabels, testImages, testLabels] }

    /// The official MNIST files (LeCun, Cortes and Burges), 60,000 training and 10,000 test images.
    public static let mnist = DatasetPins(
        trainImages: DatasetFile(
            name: "train-images-idx3-ubyte",
            sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", size: 47_040_016),
        trainLabels: DatasetFile(
            name: "train-labels-idx1-ubyte",
            sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", size: 60_008),
        testImages: DatasetFile(
            name: "t10k-images-idx3-ubyte",
            sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", size: 7_840_016),
        testLabels: DatasetFile(
            name: "t10k-labels-idx1-ubyte",
            sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", size: 10_008))
}

/// A file whose bytes are not the pinned ones.
public struct PinMismatch: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let expected: String
    public let actual: String

    public var description: String {
        "\(file): SHA-256 is \(actual), expected \(expected) (the pinned official file)"
    }
}

extension Data {
    /// Lower-case hex SHA-256 of these bytes.
    public var sha256Hex: String {
        SHA256.hash(data: self).map { String(format: "%02x", $0) }.joined()
    }
}

extension DatasetFile {
    /// Throws ``PinMismatch`` unless `contents` (uncompressed) hash to this file's pin.
    public func verify(_ contents: Data, source: String) throws {
        let actual = contents.sha256Hex
        guard actual == sha256 else { throw PinMismatch(file: source, expected: sha256, actual: actual) }
    }
}
