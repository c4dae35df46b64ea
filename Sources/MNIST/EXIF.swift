// The one EXIF fact a digit reader needs: a photo's orientation (tag 0x0112), which says how the stored
// pixels must be turned to be upright (phones store the sensor's rows and set this tag instead of
// rotating). Read from a JPEG's APP1 "Exif" segment with every offset checked against the data: the
// file is untrusted, and a malformed segment means "no orientation", never a crash.
import Foundation

/// Reading the orientation from EXIF data.
public enum EXIF {
    /// The orientation tag of a JPEG file (1...8), or nil when there is none or it is malformed.
    public static func orientation(ofJPEG bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
        var index = 2
        while index + 4 <= bytes.count {
            guard bytes[index] == 0xFF else { return nil }
            let marker = bytes[index + 1]
            if marker == 0xFF {  // fill byte
                index += 1
                continue
            }
            if marker == 0xD9 || marker == 0xDA { return nil }  // end of image, or the scan: no more headers
            if (0xD0...0xD7).contains(marker) || marker == 0x01 {
                index += 2
                continue
            }
            let length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
            guard length >= 2, index + 2 + length <= bytes.count else { return nil }
            let segment = bytes[(index + 4)..<(index + 2 + length)]
            if marker == 0xE1, segment.starts(with: Array("Exif\0\0".utf8)) {
                return orientation(ofTIFF: Array(segment.dropFirst(6)))
            }
            index += 2 + length
        }
        return nil
    }

    /// The orientation in a TIFF structure (EXIF's body): IFD0's tag 0x0112, a SHORT of 1...8.
    static func orientation(ofTIFF tiff: [UInt8]) -> Int? {
        guard tiff.count >= 8 else { return nil }
        let little: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): little = true  // "II"
        case (0x4D, 0x4D): little = false  // "MM"
        default: return nil
        }
        func read(_ offset: Int, _ width: Int) -> Int? {
            guard offset >= 0, offset + width <= tiff.count else { return nil }
            var value = 0
            for byte in 0..<width {
                let shift = little ? 8 * byte : 8 * (width - 1 - byte)
                value |= Int(tiff[offset + byte]) << shift
            }
            return value
        }
        guard read(2, 2) == 42, let ifd = read(4, 4), let count = read(ifd, 2) else { return nil }
        for entry in 0..<min(count, 1000) {
            let at = ifd + 2 + 12 * entry
            guard let tag = read(at, 2) else { return nil }
            guard tag == 0x0112 else { continue }
            guard read(at + 2, 2) == 3, read(at + 4, 4) == 1, let value = read(at + 8, 2), (1...8).contains(value)
            else { return nil }
            return value
        }
        return nil
    }
}

extension RasterImage {
    /// The image turned upright according to EXIF orientation `orientation` (1...8; others: unchanged):
    /// 2 mirrored left-right, 3 turned 180°, 4 mirrored top-bottom, 5 transposed, 6 turned 90°
    /// clockwise, 7 transversed, 8 turned 90° anticlockwise.
    public func oriented(_ orientation: Int) -> RasterImage {
        guard (2...8).contains(orientation) else { return self }
        let swaps = orientation >= 5
        let outWidth = swaps ? height : width, outHeight = swaps ? width : height
        let channels = layout.channelCount
        var out = [UInt8](repeating: 0, count: samples.count)
        for y in 0..<outHeight {
            for x in 0..<outWidth {
                let source: (x: Int, y: Int)
                switch orientation {
                case 2: source = (width - 1 - x, y)
                case 3: source = (width - 1 - x, height - 1 - y)
                case 4: source = (x, height - 1 - y)
                case 5: source = (y, x)
                case 6: source = (y, height - 1 - x)
                case 7: source = (width - 1 - y, height - 1 - x)
                default: source = (width - 1 - y, x)
                }
                let from = (source.y * width + source.x) * channels, to = (y * outWidth + x) * channels
                for channel in 0..<channels { out[to + channel] = samples[from + channel] }
            }
        }
        return RasterImage(width: outWidth, height: outHeight, layout: layout, samples: out)
    }
}
