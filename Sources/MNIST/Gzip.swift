// gzip compression and decompression of whole buffers through zlib.
// Streaming is deliberately left out: MNIST files fit in memory many times over.
import CZlib
import Foundation

/// Errors from the gzip codec.
public enum GzipError: Error, Equatable, CustomStringConvertible {
    /// The stream ended before the gzip trailer: the file was cut short.
    case truncated
    /// zlib rejected the data (bad header, bad checksum, corrupt block).
    case corrupt(String)

    public var description: String {
        switch self {
        case .truncated: return "the gzip stream ends early (the file is truncated)"
        case .corrupt(let why): return "the gzip stream is corrupt (\(why))"
        }
    }
}

/// Whole-buffer gzip through zlib.
public enum Gzip {
    /// The two magic bytes every gzip stream starts with.
    public static let magic: [UInt8] = [0x1f, 0x8b]

    /// Whether `data` starts with the gzip magic bytes.
    public static func isCompressed(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1f && data[data.startIndex + 1] == 0x8b
    }

    /// The zlib version string, for example "1.2.13".
    public static var zlibVersion: String { String(cString: CZlib.zlibVersion()) }

    /// Decompresses a complete gzip stream (concatenated members included).
    public static func decompress(_ data: Data) throws -> Data {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw GzipError.corrupt("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var input = [UInt8](data)
        var status: Int32 = Z_OK
        try input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = uInt(inputBuffer.count)
            while true {
                let produced: Int = buffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return chunk - Int(stream.avail_out)
                }
                output.append(buffer, count: produced)
                if status == Z_STREAM_END {
                    if stream.avail_in == 0 { return }
                    // Another gzip member follows: start over on the rest of the input.
                    guard inflateReset(&stream) == Z_OK else { throw GzipError.corrupt("inflateReset failed") }
                    continue
                }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { throw GzipError.truncated }
                guard status == Z_OK else {
                    let message = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                    throw GzipError.corrupt(message)
                }
            }
        }
        return output
    }

    /// Compresses `data` into one gzip member at the given zlib level (1 fastest, 9 smallest).
    public static func compress(_ data: Data, level: Int32 = 6) throws -> Data {
        var stream = z_stream()
        guard
            deflateInit2_(
                &stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { throw GzipError.corrupt("deflateInit2 failed") }
        defer { deflateEnd(&stream) }
        var input = [UInt8](data)
        let bound = Int(deflateBound(&stream, uLong(input.count))) + 64
        var output = [UInt8](repeating: 0, count: bound)
        let written: Int = try input.withUnsafeMutableBufferPointer { inputBuffer in
            try output.withUnsafeMutableBufferPointer { out in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = uInt(inputBuffer.count)
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                guard deflate(&stream, Z_FINISH) == Z_STREAM_END else {
                    throw GzipError.corrupt("deflate did not finish")
                }
                return out.count - Int(stream.avail_out)
            }
        }
        return Data(output[0..<written])
    }
}
