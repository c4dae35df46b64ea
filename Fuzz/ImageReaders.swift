// libFuzzer target for the readers of files that users and mirrors hand over: the image dispatch
// (`ImageFile.decode`: PNG through libpng, JPEG through libjpeg-turbo with the EXIF orientation
// parser, binary PGM/PPM), the preprocessing of whatever decodes,
// the IDX reader with its gzip layer, and the reader of what a server's headers make curl write
// during a download (`Download.StandardError`). Fuzz/run.sh compiles it with AddressSanitizer
// together with those MNIST sources alone (the fetching, which needs swift-crypto, stays out), with
// checks on as in the package. Byte 0 of an input picks the reader (modulo 5): 0 an image file,
// 1 an IDX image file, 2 an IDX label file, 3 a pair (bytes 1-2 give the image file's length,
// little-endian, then come the image file and the label file), 4 curl's standard error. The rest is
// the file. A failure is a crash: a trap or an ASan report in a reader, an error of another type than
// the reader's own, sizes that disagree, a decoded image or data set that does not survive encoding
// again, or a download report read differently when it arrives in two pieces.
import Foundation

/// The readers an input's first byte chooses between.
enum Reader: UInt8, CaseIterable {
    case image = 0, idxImages, idxLabels, idxPair, downloadReport
}

/// Stops the fuzzer with `message` (kept in optimised builds, unlike a `precondition`'s).
func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReaders(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0, let reader = Reader(rawValue: data[0] % 5) else { return 0 }
    // A slice whose indices start at 1: readers must not assume that `Data` starts at 0.
    let file = Data(bytes: data, count: size).dropFirst()
    switch reader {
    case .image: checkImage([UInt8](file))
    case .idxImages: checkIDXImages(file)
    case .idxLabels: checkIDXLabels(file)
    case .idxPair:
        guard file.count >= 2 else { return 0 }
        let length = Int(file[file.startIndex]) | Int(file[file.startIndex + 1]) << 8
        let images = file.dropFirst(2).prefix(length)
        checkIDXPair(images: images, labels: file.dropFirst(2 + images.count))
    case .downloadReport: checkDownloadReport([UInt8](file))
    }
    return 0
}

/// What curl writes on standard error during a download (each response's headers, as the server sent
/// them, its error message, the final status): any bytes are read, to the same status, length and
/// message whether they come in one piece or in two cut anywhere, and a length read is above zero.
func checkDownloadReport(_ bytes: [UInt8]) {
    func read(_ pieces: [ArraySlice<UInt8>]) -> Download.StandardError {
        var report = Download.StandardError()
        for piece in pieces { report.consume(piece) }
        report.finish()
        return report
    }
    let whole = read([bytes[...]])
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) * 257 % (bytes.count + 1)
    let split = read([bytes[..<cut], bytes[cut...]])
    expect(
        whole.status == split.status && whole.expected == split.expected && whole.message == split.message,
        "a download report read differently when cut at byte \(cut)")
    if let expected = whole.expected { expect(expected > 0, "a Content-Length of \(expected) taken") }
}

/// An image file: decodes or throws an `ImageFileError`; what decodes has consistent sizes,
/// encodes as PNG (and PGM/PPM) and decodes again to the same pixels, and preprocesses.
func checkImage(_ bytes: [UInt8]) {
    let format = ImageFileFormat.detect(bytes)
    let image: RasterImage
    do {
        image = try ImageFile.decode(bytes)
    } catch let error as ImageFileError {
        expect(!error.description.isEmpty, "an image error without a description")
        if case .other = format, !bytes.isEmpty {
            expect(error == .unsupportedFormat(kind: format.kind), "unrecognised bytes gave \(error)")
        }
        return
    } catch {
        fatalError("ImageFile.decode threw \(type(of: error)), not an ImageFileError: \(error)")
    }
    expect(
        image.width > 0 && image.height > 0 && image.samples.count == image.pixelCount * image.layout.channelCount,
        "a \(image.width)x\(image.height) \(image.layout) image holds \(image.samples.count) samples")
    expect(image.pixelCount <= ImageFile.maximumPixelCount, "a \(image.width)x\(image.height) image decoded")
    switch format {
    case .png: break
    case .jpeg: expect(image.layout == .grey, "a JPEG file decoded as \(image.layout)")
    case .pgm: expect(image.layout == .grey, "a PGM file decoded as \(image.layout)")
    case .ppm: expect(image.layout == .rgb, "a PPM file decoded as \(image.layout)")
    case .other: fatalError("bytes of no known image format decoded")
    }

    do {
        let again = try PNG.decode(PNG.encode(image))
        expect(again == image, "a decoded \(image.layout) image changes when encoded as PNG and decoded")
    } catch {
        fatalError("a decoded \(image.width)x\(image.height) \(image.layout) image fails as PNG: \(error)")
    }
    do {
        let netpbm = try PNM.decode(PNM.encode(image))
        expect(
            netpbm.width == image.width && netpbm.height == image.height
                && netpbm.layout == (image.layout.isColour ? .rgb : .grey),
            "PGM/PPM encoding changes a \(image.width)x\(image.height) \(image.layout) image's size or kind")
        if !image.layout.hasAlpha {
            expect(netpbm == image, "a decoded \(image.layout) image changes when encoded as PGM/PPM and decoded")
        }
    } catch {
        fatalError("a decoded \(image.width)x\(image.height) \(image.layout) image fails as PGM/PPM: \(error)")
    }

    do {
        let preprocessor = MNISTPreprocessor()
        let digit = try preprocessor.preprocess(image)
        expect(
            digit.pixels.count == digit.side * digit.side && digit.pixels.allSatisfy { (0...1).contains($0) },
            "preprocessing gave \(digit.pixels.count) pixels for a \(digit.side)x\(digit.side) frame")
        // The number reader's geometry on the same ink: every group, cut along its candidate cuts, and
        // one digit made of every group.
        let map = try preprocessor.inkMap(image)
        let groups = NumberSegmentation.segment(map)
        for group in groups {
            let side = max(1, group.box.height / 8)
            let cuts = NumberSegmentation.cuts(map, group, spacing: side, reach: side, limit: 6)
            expect(
                cuts.allSatisfy { cut in
                    cut.columns.count == group.box.height
                        && cut.columns.allSatisfy { (group.box.x..<(group.box.x + group.box.width)).contains($0) }
                },
                "a cut outside its group \(group.box)")
            for piece in NumberSegmentation.pieces(group, cutAlong: cuts) {
                do {
                    let framed = try preprocessor.frame(map, [piece])
                    expect(framed.pixels.allSatisfy { (0...1).contains($0) }, "a number's digit out of 0...1")
                } catch is PreprocessingError {}
            }
        }
        if !groups.isEmpty {
            let framed = try preprocessor.frame(map, groups)
            expect(framed.pixels.allSatisfy { (0...1).contains($0) }, "a digit of every group out of 0...1")
        }
    } catch is PreprocessingError {
    } catch {
        fatalError("preprocessing threw \(type(of: error)): \(error)")
    }
}

/// The file's bytes after the IDX reader's gzip layer, or nil when it refused them.
func decompressed(_ file: Data, name: String) -> Data? {
    do {
        let bytes = try IDX.decompressed(file, file: name)
        if Gzip.isCompressed(file) && bytes.count <= 1 << 20 {
            // Whatever decompresses compresses and decompresses again to the same bytes.
            let again = try? Gzip.decompress(Gzip.compress(bytes))
            expect(again == bytes, "\(bytes.count) decompressed bytes do not survive gzip again")
        }
        return bytes
    } catch let error as IDXError {
        expect(!error.description.isEmpty, "an IDX error without a description")
        return nil
    } catch {
        fatalError("IDX.decompressed threw \(type(of: error)), not an IDXError: \(error)")
    }
}

/// Runs `parse`, which may throw only an `IDXError`.
func parsed<Result>(_ what: String, _ parse: () throws -> Result) -> Result? {
    do {
        return try parse()
    } catch let error as IDXError {
        expect(!error.description.isEmpty, "an IDX error without a description")
        return nil
    } catch {
        fatalError("\(what) threw \(type(of: error)), not an IDXError: \(error)")
    }
}

/// An IDX image file: what parses is a whole number of images of a supported size, the file's bytes.
func checkIDXImages(_ file: Data) {
    guard let bytes = decompressed(file, name: "images"),
        let (rows, columns, pixels) = parsed("IDX.parseImages", { try IDX.parseImages(bytes, file: "images") })
    else { return }
    expect((1...4096).contains(rows) && (1...4096).contains(columns), "IDX images of \(rows)x\(columns) pixels")
    expect(pixels.count % (rows * columns) == 0, "\(pixels.count) pixels are not whole \(rows)x\(columns) images")
    expect(pixels.elementsEqual(bytes.dropFirst(16)), "the pixels are not the bytes after the 16-byte header")
}

/// An IDX label file: what parses is the file's bytes after the header, each a digit.
func checkIDXLabels(_ file: Data) {
    guard let bytes = decompressed(file, name: "labels"),
        let labels = parsed("IDX.parseLabels", { try IDX.parseLabels(bytes, file: "labels") })
    else { return }
    expect(labels.allSatisfy { $0 <= 9 }, "a label above 9 was accepted")
    expect(labels.elementsEqual(bytes.dropFirst(8)), "the labels are not the bytes after the 8-byte header")
}

/// A pair of IDX files: what parses holds one label per image and writes back as the same files.
func checkIDXPair(images: Data, labels: Data) {
    guard let imageBytes = decompressed(images, name: "images"), let labelBytes = decompressed(labels, name: "labels"),
        let set = parsed(
            "IDX.parsePair",
            { try IDX.parsePair(images: imageBytes, imagesFile: "images", labels: labelBytes, labelsFile: "labels") })
    else { return }
    expect(
        set.pixels.count == set.count * set.rows * set.columns,
        "\(set.pixels.count) pixels for \(set.count) images of \(set.rows)x\(set.columns)")
    expect(set.labels.allSatisfy { $0 <= 9 }, "a label above 9 was accepted")
    expect(IDX.imageFileBytes(set) == imageBytes, "a parsed image file does not write back as the same bytes")
    expect(IDX.labelFileBytes(set) == labelBytes, "a parsed label file does not write back as the same bytes")
}

extension ImageFileFormat {
    /// What `.other` names, else nil.
    var kind: String? {
        if case .other(let kind) = self { return kind }
        return nil
    }
}

/// The seed inputs: small valid files of every kind each reader takes (the corpus to start from:
/// valid files reach the decoders' deeper checks sooner than random bytes do).
func seeds() throws -> [(name: String, input: [UInt8])] {
    var seeds: [(name: String, input: [UInt8])] = []
    func add(_ name: String, _ reader: Reader, _ file: [UInt8]) {
        seeds.append(("seed-\(name)", [reader.rawValue] + file))
    }

    add(
        "download-report", .downloadReport,
        Array(
            ("HTTP/1.1 302 Found\r\nLocation: /file\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n\n"
                + Download.StandardError.statusMarker + "200\n").utf8))
    add(
        "download-error", .downloadReport,
        Array(
            ("curl: (22) The requested URL returned error: 404\n\n" + Download.StandardError.statusMarker + "404").utf8)
    )

    // A "1" as a light stroke on a dark, slightly uneven ground, so that preprocessing finds ink.
    let width = 12, height = 10
    let grey = (0..<(width * height)).map { index -> UInt8 in
        let x = index % width, y = index / width
        return (5...6).contains(x) && (1...8).contains(y) ? 230 : UInt8(10 + (x + y) % 3)
    }
    let image = RasterImage(width: width, height: height, layout: .grey, samples: grey)
    for layout in RasterImage.Layout.allCases {
        let converted = image.converted(to: layout)
        add("png-\(layout.rawValue)", .image, try PNG.encode(converted))
        add("pnm-\(layout.rawValue)", .image, PNM.encode(converted))
        let deep = converted.samples.map { UInt16($0) * 257 }
        add(
            "png16-\(layout.rawValue)", .image,
            try PNG.encode16(width: width, height: height, layout: layout, samples: deep))
    }
    // JPEG: baseline and progressive, colour and grey, and one with an EXIF orientation segment.
    let colour = image.converted(to: .rgb)
    add("jpeg-420", .image, try JPEG.encode(colour, quality: 80))
    add("jpeg-444-progressive", .image, try JPEG.encode(colour, quality: 90, subsampling: .none, progressive: true))
    add("jpeg-grey", .image, try JPEG.encode(image, quality: 75))
    let plain = try JPEG.encode(image, quality: 75)
    let tiff: [UInt8] =
        Array("II".utf8) + [42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]
    let exif = Array("Exif\0\0".utf8) + tiff
    add(
        "jpeg-exif-6", .image,
        Array(plain.prefix(2)) + [0xFF, 0xE1, 0, UInt8(exif.count + 2)] + exif + Array(plain.dropFirst(2)))
    let greySamples: [UInt16] = [0, 1, 300, 65535, 7, 9]
    add("pgm16", .image, PNM.encode(width: 3, height: 2, layout: .grey, samples: greySamples, maxValue: 65535))
    let rgbSamples: [UInt16] = [0, 15, 3, 4, 5, 6]
    add("ppm15", .image, PNM.encode(width: 2, height: 1, layout: .rgb, samples: rgbSamples, maxValue: 15, comment: "c"))
    // Files libpng's simplified writer cannot make: palettes, sub-8-bit grey, interlacing, gAMA, tRNS.
    let palette = (0..<16).map { [UInt8($0 * 16), 0, 255 - UInt8($0 * 16)] }
    add(
        "png-palette", .image,
        HandmadePNG.make(
            width: 9, height: 7, bitDepth: 4, colourType: .palette, samples: (0..<63).map { $0 % 16 },
            interlaced: true, palette: palette, transparency: [0, 128]))
    for bitDepth in [1, 2, 4] {
        let samples = (0..<15).map { $0 % (1 << bitDepth) }
        add(
            "png-grey\(bitDepth)", .image,
            HandmadePNG.make(
                width: 5, height: 3, bitDepth: bitDepth, colourType: .grey, samples: samples,
                interlaced: bitDepth == 2))
    }
    add(
        "png-rgb16-gamma", .image,
        HandmadePNG.make(
            width: 3, height: 3, bitDepth: 16, colourType: .rgb, samples: (0..<27).map { $0 * 2400 },
            interlaced: true, gamma: 45455))
    add(
        "png-grey-trns", .image,
        HandmadePNG.make(
            width: 4, height: 2, bitDepth: 8, colourType: .grey, samples: [0, 50, 100, 150, 200, 250, 50, 0],
            transparency: [0, 50]))

    let set = LabeledImages(rows: 4, columns: 3, pixels: (0..<36).map { UInt8($0 * 7) }, labels: [3, 0, 9])
    let images = [UInt8](IDX.imageFileBytes(set))
    let labels = [UInt8](IDX.labelFileBytes(set))
    let gzipImages = [UInt8](try Gzip.compress(Data(images)))
    let gzipLabels = [UInt8](try Gzip.compress(Data(labels)))
    add("idx-images", .idxImages, images)
    add("idx-images-gz", .idxImages, gzipImages)
    add("idx-labels", .idxLabels, labels)
    add("idx-labels-gz", .idxLabels, gzipLabels)
    func pair(_ images: [UInt8], _ labels: [UInt8]) -> [UInt8] {
        [UInt8(images.count & 0xff), UInt8(images.count >> 8)] + images + labels
    }
    add("idx-pair", .idxPair, pair(images, labels))
    add("idx-pair-gz", .idxPair, pair(gzipImages, gzipLabels))
    return seeds
}

/// With MNIST_FUZZ_SEEDS set to a folder, writes the seed inputs there.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let folder = ProcessInfo.processInfo.environment["MNIST_FUZZ_SEEDS"] else { return 0 }
    do {
        for (name, input) in try seeds() {
            try Data(input).write(to: URL(fileURLWithPath: folder).appendingPathComponent(name))
        }
    } catch {
        fatalError("cannot write the seed inputs to \(folder): \(error)")
    }
    return 0
}
