// JPEG files as phones write them, for tests: an EXIF APP1 segment with an orientation tag, written
// here byte by byte from the EXIF/TIFF layout (independently of the reader in Sources/MNIST/EXIF.swift).

/// Building blocks of test JPEG files.
public enum JPEGFiles {
    /// An APP1 EXIF segment whose IFD0 holds a first tag (ImageWidth) and then Orientation = `value`.
    public static func exifSegment(orientation value: Int, bigEndian: Bool = false) -> [UInt8] {
        func u16(_ v: Int) -> [UInt8] {
            bigEndian ? [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)]
        }
        func u32(_ v: Int) -> [UInt8] { bigEndian ? u16(v >> 16) + u16(v & 0xFFFF) : u16(v & 0xFFFF) + u16(v >> 16) }
        var tiff: [UInt8] = bigEndian ? Array("MM".utf8) : Array("II".utf8)
        tiff += u16(42) + u32(8)  // IFD0 right after the header
        tiff += u16(2)  // two entries
        tiff += u16(0x0100) + u16(4) + u32(1) + u32(48)  // ImageWidth, LONG: another tag first
        tiff += u16(0x0112) + u16(3) + u32(1) + u16(value) + u16(0)  // Orientation, SHORT
        tiff += u32(0)  // no next IFD
        let body = Array("Exif\0\0".utf8) + tiff
        let length = body.count + 2
        return [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + body
    }

    /// `jpeg` with `segment` inserted right after its SOI marker.
    public static func inserting(_ segment: [UInt8], into jpeg: [UInt8]) -> [UInt8] {
        Array(jpeg.prefix(2)) + segment + Array(jpeg.dropFirst(2))
    }
}
