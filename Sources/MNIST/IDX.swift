// Reading and writing IDX files (the MNIST file format), raw or gzip, with strict validation.
// What is decided here: the byte layout and every way a file can be wrong. What is not: where files
// come from (Fetch.swift) or whether they are the official ones (Pins.swift).
import Foundation

/// A reason an IDX file or a pair of them was rejected. Each names the file.
public enum IDXError: Error, Equatable, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case badGzip(file: String, reason: String)
    case badMagic(file: String, expected: UInt32, found: UInt32)
    case badDimensions(file: String, reason: String)
    case wrongLength(file: String, expected: Int, found: Int)
    case countMismatch(images: String, imageCount: Int, labels: String, labelCount: Int)
    case labelOutOfRange(file: String, index: Int, label: UInt8)

    public var description: String {
        switch self {
        case .unreadable(let file, let reason):
            return "\(file): cannot be read (\(reason))"
        case .badGzip(let file, let reason):
            return "\(file): \(reason); delete it and run `mnist fetch` again"
        case .badMagic(let file, let expected, let found):
            return "\(file): not an IDX \(expected == IDX.imageMagic ? "image" : "label") file "
                + "(magic number \(found), expected \(expected))"
        case .badDimensions(let file, let reason):
            return "\(file): \(reason)"
        case .wrongLength(let file, let expected, let found):
            return "\(file): the header promises \(expected) bytes but the file has \(found)"
                + (found < expected ? " (truncated)" : " (trailing data)")
        case .countMismatch(let images, let imageCount, let labels, let labelCount):
            return "\(images) holds \(imageCount) images but \(labels) holds \(labelCount) labels"
        case .labelOutOfRange(let file, let index, let label):
            return "\(file): label \(label) at index \(index) is outside 0-9"
        }
    }
}

/// The IDX format: a big-endian header (magic, then one UInt32 per dimension) followed by unsigned bytes.
public enum IDX {
    /// Magic of an image file: unsigned bytes, 3 dimensions.
    public static let imageMagic: UInt32 = 2051
    /// Magic of a label file: unsigned bytes, 1 dimension.
    public static let labelMagic: UInt32 = 2049

    /// Reads a file's bytes, decompressing when it starts with the gzip magic (whatever its name).
    public static func contents(of url: URL) throws -> Data {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw IDXError.unreadable(file: url.path, reason: (error as NSError).localizedDescription)
        }
        return try decompressed(data, file: url.path)
    }

    /// A file's bytes as read: decompressed when they start with the gzip magic, else unchanged.
    public static func decompressed(_ data: Data, file: String) throws -> Data {
        guard Gzip.isCompressed(data) else { return data }
        do {
            return try Gzip.decompress(data)
        } catch {
            throw IDXError.badGzip(file: file, reason: "\(error)")
        }
    }

    /// Parses an image file: returns (rows, columns, pixels `[count, rows, columns]`).
    public static func parseImages(_ data: Data, file: String) throws -> (rows: Int, columns: Int, pixels: [UInt8]) {
        let header = try parseHeader(data, file: file, magic: imageMagic, dimensions: 3)
        let (count, rows, columns) = (header[0], header[1], header[2])
        guard rows > 0, columns > 0, rows <= 4096, columns <= 4096 else {
            throw IDXError.badDimensions(file: file, reason: "images of \(rows)x\(columns) pixels are not supported")
        }
        let expected = 16 + count * rows * columns
        guard data.count == expected else {
            throw IDXError.wrongLength(file: file, expected: expected, found: data.count)
        }
        return (rows, columns, [UInt8](data.dropFirst(16)))
    }

    /// Parses a label file and checks every label is a digit 0-9.
    public static func parseLabels(_ data: Data, file: String) throws -> [UInt8] {
        let count = try parseHeader(data, file: file, magic: labelMagic, dimensions: 1)[0]
        let expected = 8 + count
        guard data.count == expected else {
            throw IDXError.wrongLength(file: file, expected: expected, found: data.count)
        }
        let labels = [UInt8](data.dropFirst(8))
        if let index = labels.firstIndex(where: { $0 > 9 }) {
            throw IDXError.labelOutOfRange(file: file, index: index, label: labels[index])
        }
        return labels
    }

    /// Reads and validates a pair of image and label files (raw or gzip).
    public static func read(images imagesURL: URL, labels labelsURL: URL) throws -> LabeledImages {
        try parsePair(
            images: contents(of: imagesURL), imagesFile: imagesURL.path, labels: contents(of: labelsURL),
            labelsFile: labelsURL.path)
    }

    /// Parses an image file and its label file (uncompressed bytes) and checks their counts agree.
    public static func parsePair(images: Data, imagesFile: String, labels: Data, labelsFile: String) throws
        -> LabeledImages
    {
        let (rows, columns, pixels) = try parseImages(images, file: imagesFile)
        let parsedLabels = try parseLabels(labels, file: labelsFile)
        let imageCount = pixels.count / (rows * columns)
        guard imageCount == parsedLabels.count else {
            throw IDXError.countMismatch(
                images: imagesFile, imageCount: imageCount, labels: labelsFile, labelCount: parsedLabels.count)
        }
        return LabeledImages(rows: rows, columns: columns, pixels: pixels, labels: parsedLabels)
    }

    /// The bytes of an image file holding `images`.
    public static func imageFileBytes(_ images: LabeledImages) -> Data {
        var data = header(magic: imageMagic, dimensions: [images.count, images.rows, images.columns])
        data.append(contentsOf: images.pixels)
        return data
    }

    /// The bytes of a label file holding the labels of `images`.
    public static func labelFileBytes(_ images: LabeledImages) -> Data {
        var data = header(magic: labelMagic, dimensions: [images.count])
        data.append(contentsOf: images.labels)
        return data
    }

    private static func header(magic: UInt32, dimensions: [Int]) -> Data {
        var data = Data()
        for value in [magic] + dimensions.map({ UInt32($0) }) {
            withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    private static func parseHeader(_ data: Data, file: String, magic: UInt32, dimensions: Int) throws -> [Int] {
        let headerLength = 4 + 4 * dimensions
        guard data.count >= 4 else { throw IDXError.wrongLength(file: file, expected: headerLength, found: data.count) }
        let found = bigEndianUInt32(data, at: 0)
        guard found == magic else { throw IDXError.badMagic(file: file, expected: magic, found: found) }
        guard data.count >= headerLength else {
            throw IDXError.wrongLength(file: file, expected: headerLength, found: data.count)
        }
        let sizes = (0..<dimensions).map { Int(bigEndianUInt32(data, at: 4 + 4 * $0)) }
        guard sizes[0] <= 10_000_000 else {
            throw IDXError.badDimensions(file: file, reason: "\(sizes[0]) items is implausibly many")
        }
        return sizes
    }

    private static func bigEndianUInt32(_ data: Data, at offset: Int) -> UInt32 {
        let start = data.startIndex + offset
        return data[start..<(start + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }
}
