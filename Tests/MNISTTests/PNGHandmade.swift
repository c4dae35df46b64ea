// A tiny PNG writer for tests, independent of libpng: any colour type and bit depth, palette and
// tRNS, Adam7 interlacing, and deliberately broken headers. The zlib stream uses stored (uncompressed)
// deflate blocks, so no compressor is needed; CRC-32 and Adler-32 are computed here.
// Deliberately left out: filtering (every row uses filter type 0) and compression.
import Foundation

enum HandmadePNG {
    /// PNG colour types.
    enum ColourType: UInt8 {
        case grey = 0, rgb = 2, palette = 3, greyAlpha = 4, rgba = 6

        var channelCount: Int {
            switch self {
            case .grey, .palette: return 1
            case .greyAlpha: return 2
            case .rgb: return 3
            case .rgba: return 4
            }
        }
    }

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The Adam7 passes: (x start, y start, x step, y step).
    static let adam7: [(Int, Int, Int, Int)] = [
        (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2),
    ]

    /// A PNG file. `samples` is `[height, width, channels]` with values below 2^bitDepth (palette
    /// indices for `.palette`). `palette` entries are RGB triples; `transparency` is the tRNS
    /// payload as raw bytes; `gamma` adds a gAMA chunk (value times 100000).
    static func make(
        width: Int, height: Int, bitDepth: Int, colourType: ColourType, samples: [Int],
        interlaced: Bool = false, palette: [[UInt8]]? = nil, transparency: [UInt8]? = nil,
        gamma: UInt32? = nil
    ) -> [UInt8] {
        precondition(samples.count == width * height * colourType.channelCount)
        var file = signature
        var header = bigEndian(UInt32(width)) + bigEndian(UInt32(height))
        header += [UInt8(bitDepth), colourType.rawValue, 0, 0, interlaced ? 1 : 0]
        file += chunk("IHDR", header)
        if let gamma { file += chunk("gAMA", bigEndian(gamma)) }
        if let palette { file += chunk("PLTE", palette.flatMap { $0 }) }
        if let transparency { file += chunk("tRNS", transparency) }
        var raw = [UInt8]()
        let passes = interlaced ? adam7 : [(0, 0, 1, 1)]
        for (x0, y0, dx, dy) in passes {
            let columns = Array(stride(from: x0, to: width, by: dx))
            let rows = Array(stride(from: y0, to: height, by: dy))
            if columns.isEmpty || rows.isEmpty { continue }
            for y in rows {
                raw.append(0)  // filter type None
                raw += packRow(
                    columns.map { x in
                        Array(
                            samples[
                                ((y * width + x) * colourType.channelCount)..<((y * width + x + 1)
                                    * colourType.channelCount)])
                    }, bitDepth: bitDepth)
            }
        }
        // Split IDAT in two to exercise multi-chunk image data.
        let zlib = zlibStored(raw)
        let half = zlib.count / 2
        file += chunk("IDAT", Array(zlib[..<half]))
        file += chunk("IDAT", Array(zlib[half...]))
        file += chunk("IEND", [])
        return file
    }

    /// Packs pixels (each a list of channel values) into one scanline, MSB first below 8 bits.
    static func packRow(_ pixels: [[Int]], bitDepth: Int) -> [UInt8] {
        var out = [UInt8]()
        switch bitDepth {
        case 8: for pixel in pixels { out += pixel.map { UInt8($0) } }
        case 16: for pixel in pixels { for value in pixel { out += [UInt8(value >> 8), UInt8(value & 0xFF)] } }
        default:
            var accumulator = 0, bits = 0
            for pixel in pixels {
                for value in pixel {
                    accumulator = accumulator << bitDepth | value
                    bits += bitDepth
                    if bits == 8 { out.append(UInt8(accumulator)); accumulator = 0; bits = 0 }
                }
            }
            if bits > 0 { out.append(UInt8(accumulator << (8 - bits))) }
        }
        return out
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        return bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(crc32(typeBytes + data))
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// A zlib stream of stored deflate blocks (no compression).
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let length = min(65535, data.count - offset)
            let isLast = offset + length == data.count
            out.append(isLast ? 1 : 0)
            out += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
            out += data[offset..<(offset + length)]
            offset += length
        } while offset < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        return out + bigEndian(b << 16 | a)
    }

    /// A PNG whose IHDR declares `width` x `height` followed by IEND only (no image data).
    static func headerOnly(width: UInt32, height: UInt32) -> [UInt8] {
        signature + chunk("IHDR", bigEndian(width) + bigEndian(height) + [8, 0, 0, 0, 0]) + chunk("IEND", [])
    }
}
