// The safetensors file format, F32 only: an 8-byte little-endian header length, a JSON header
// (`dtype`, `shape`, `data_offsets` per tensor, and a `__metadata__` string-to-string map), then
// the raw little-endian data. Writes are atomic; reads validate everything and throw errors that
// name the file. Other dtypes, memory mapping and lazy loading are left out.
import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One F32 tensor read from or written to a safetensors file.
public struct NamedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// Row-major values, `shape.reduce(1, *)` of them.
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Why a model file could not be read or written; always names the file.
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}

/// Reading and writing safetensors files.
public enum SafeTensors {
    /// Largest JSON header accepted (safetensors itself caps it at 100 MB).
    public static let maximumHeaderLength = 100_000_000

    /// Writes `tensors` (in this order) and `metadata` to `url` atomically: a temporary file in
    /// the same directory is written completely, then renamed over `url`.
    public static func write(tensors: [NamedTensor], metadata: [String: String], to url: URL) throws {
        let path = url.path
        for tensor in tensors
        where tensor.values.count != tensor.shape.reduce(1, *) || tensor.shape.contains(where: { $0 < 0 }) {
            throw ModelFileError(
                path: path, reason: "tensor \(tensor.name) has \(tensor.values.count) values for shape \(tensor.shape)")
        }
        var header = "{"
        var offset = 0
        if !metadata.isEmpty {
            let entries = metadata.keys.sorted().map { "\(jsonQuoted($0)):\(jsonQuoted(metadata[$0] ?? ""))" }
            header += "\"__metadata__\":{\(entries.joined(separator: ","))}"
        }
        for tensor in tensors {
            if header.count > 1 { header += "," }
            let end = offset + tensor.values.count * 4
            header +=
                "\(jsonQuoted(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }  // pad with spaces, as the spec allows
        var file = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: headerBytes)
        for tensor in tensors {
            var littleEndian = tensor.values.map { $0.bitPattern.littleEndian }
            littleEndian.withUnsafeMutableBytes { file.append(contentsOf: $0) }
        }
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(
            ".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).partial")
        do {
            try file.write(to: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw ModelFileError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
        // On disk before it replaces anything (a crash must leave the old file or the whole new one),
        // then rename(2) replaces the target atomically: readers see the old file or the new one.
        let descriptor = open(temporary.path, O_RDONLY)
        let synced = descriptor >= 0 && fsync(descriptor) == 0
        if descriptor >= 0 { close(descriptor) }
        guard synced else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw ModelFileError(path: path, reason: "cannot flush the new file to disk: \(reason)")
        }
        guard rename(temporary.path, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw ModelFileError(path: path, reason: "cannot move the finished file into place: \(reason)")
        }
        // The rename itself is durable once the folder is flushed.
        let folder = open(directory.path, O_RDONLY)
        if folder >= 0 {
            _ = fsync(folder)
            close(folder)
        }
    }

    /// Reads and validates a whole file: header length within the file, JSON object, every
    /// tensor F32 with non-negative shape, offsets matching the shape, in bounds and contiguous
    /// from 0 to the end of the file, metadata a string-to-string map.
    public static func read(from url: URL) throws -> (tensors: [NamedTensor], metadata: [String: String]) {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ModelFileError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(data, path: path)
    }

    /// Parses the bytes of a safetensors file; `path` is only used in errors.
    public static func parse(_ data: Data, path: String) throws -> (tensors: [NamedTensor], metadata: [String: String])
    {
        func fail(_ reason: String) -> ModelFileError { ModelFileError(path: path, reason: reason) }
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else {
            throw fail("not a safetensors file: \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var headerLength: UInt64 = 0
        for index in (0..<8).reversed() { headerLength = headerLength << 8 | UInt64(bytes[index]) }
        guard headerLength >= 2, headerLength <= UInt64(maximumHeaderLength), headerLength <= UInt64(bytes.count - 8)
        else {
            throw fail(
                "not a safetensors file or truncated: header length \(headerLength) does not fit in \(bytes.count) bytes"
            )
        }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = Data(bytes[8..<headerEnd])
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes), let header = json as? [String: Any]
        else {
            throw fail("header is not a JSON object")
        }
        var metadata = [String: String]()
        if let rawMetadata = header["__metadata__"] {
            guard let map = rawMetadata as? [String: Any] else { throw fail("__metadata__ is not an object") }
            for (key, value) in map {
                guard let text = value as? String else { throw fail("__metadata__ value for \(key) is not a string") }
                metadata[key] = text
            }
        }
        struct Entry { var name: String; var shape: [Int]; var begin: Int; var end: Int }
        var entries = [Entry]()
        for (name, value) in header where name != "__metadata__" {
            guard let fields = value as? [String: Any] else { throw fail("tensor \(name): entry is not an object") }
            guard let dtype = fields["dtype"] as? String else { throw fail("tensor \(name): missing dtype") }
            guard dtype == "F32" else { throw fail("tensor \(name): dtype \(dtype), only F32 is supported") }
            guard let shape = integers(fields["shape"]), shape.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }) else {
                throw fail("tensor \(name): shape is not a list of non-negative integers")
            }
            guard let offsets = integers(fields["data_offsets"]), offsets.count == 2 else {
                throw fail("tensor \(name): data_offsets is not a pair of integers")
            }
            var elements = 1
            for dimension in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= bytes.count else {
                    throw fail("tensor \(name): shape \(shape) is larger than the file")
                }
                elements = product
            }
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == elements * 4 else {
                throw fail(
                    "tensor \(name): data_offsets \(offsets) do not hold \(elements) F32 values of shape \(shape)")
            }
            entries.append(Entry(name: name, shape: shape, begin: offsets[0], end: offsets[1]))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for entry in entries {
            guard entry.begin == expected else {
                throw fail(
                    "tensor \(entry.name): data starts at \(entry.begin), expected \(expected) (overlapping or gap)")
            }
            expected = entry.end
        }
        let dataLength = bytes.count - headerEnd
        guard expected == dataLength else {
            throw fail(
                "data section is \(dataLength) bytes but the tensors describe \(expected) (truncated or trailing bytes)"
            )
        }
        let tensors = entries.map { entry -> NamedTensor in
            var values = [Float](repeating: 0, count: (entry.end - entry.begin) / 4)
            var position = headerEnd + entry.begin
            for index in values.indices {
                let bits =
                    UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8
                    | UInt32(bytes[position + 2]) << 16 | UInt32(bytes[position + 3]) << 24
                values[index] = Float(bitPattern: bits)
                position += 4
            }
            return NamedTensor(name: entry.name, shape: entry.shape, values: values)
        }
        return (tensors, metadata)
    }

    private static func integers(_ value: Any?) -> [Int]? {
        guard let list = value as? [Any] else { return nil }
        var result = [Int]()
        for item in list {
            guard type(of: item) != Bool.self, let number = item as? Int else { return nil }
            result.append(number)
        }
        return result
    }

    private static func jsonQuoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
