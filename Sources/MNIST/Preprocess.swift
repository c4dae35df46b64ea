// The pure function that turns a user's decoded image into a 28x28 MNIST-like input, the way the
// MNIST digits were made: flatten to grey over white, make the ink light on black, find the ink
// and crop to it, scale the longer side to 20 pixels by area averaging, and place the result in a
// 28x28 frame with its centre of mass at the centre. A photo's uneven lighting and ruled lines are
// taken out first (PreprocessPhoto.swift). It also reports what it decided, for `--show`.
// Deliberately left out: deskewing, stroke-width normalisation, splitting several digits, and any
// I/O (decoding is ImageFile's job, drawing TextPicture's).
import Foundation

/// Why an image could not be turned into an MNIST input.
public enum PreprocessingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No ink: the image's contrast (robust darkest/lightest level against the paper, 0...255) is
    /// below `MNISTPreprocessor.Options.minimumContrast`. Blank images are an error, never an
    /// all-black input that the network would classify anyway.
    case blankImage(contrast: Int)

    public var description: String {
        switch self {
        case .blankImage(let contrast):
            return "the image looks blank: its ink differs from the paper by only \(contrast) of 255 grey levels"
        }
    }
}

/// A rectangle of pixels: columns `x..<x+width`, rows `y..<y+height`.
public struct PixelRectangle: Equatable, Sendable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var description: String { "\(width)x\(height) at (\(x), \(y))" }
}

/// What the preprocessor found and decided, step by step (for `--show` and for tests).
public struct PreprocessingReport: Equatable, Sendable {
    /// The decoded image's size.
    public var sourceWidth: Int
    public var sourceHeight: Int
    /// The paper's grey level (median of the border pixels), 0...255, after compositing over white.
    public var paperLevel: Int
    /// The ink's extreme grey level (robust darkest or lightest), 0...255.
    public var inkLevel: Int
    /// True when the ink was darker than the paper and the image was inverted.
    public var wasInverted: Bool
    /// The ink threshold (Otsu, clamped to 0.25...0.75) on the contrast-stretched 0...1 scale.
    public var threshold: Float
    /// Connected ink regions kept, and those dropped as specks (regions with no pixel above the
    /// threshold, faint smudges, are erased too but not counted).
    public var keptRegionCount: Int
    public var speckCount: Int
    /// The ink's bounding box in the source image.
    public var cropBox: PixelRectangle
    /// The cropped ink after scaling (longer side `boxSize`), placed inside the output frame.
    public var placedBox: PixelRectangle
    /// The output's centre of mass, pixel (i, j) covering [i, i+1) x [j, j+1); the frame centre
    /// is (14, 14) for 28x28.
    public var centreOfMass: (x: Double, y: Double)
    /// How uneven the lighting was (the paper's range, 0...255) when it was evened out; nil when it
    /// was even enough to leave alone.
    public var correctedLighting: Int? = nil
    /// Lines of ruled or squared paper erased.
    public var erasedLines = 0
    /// The strokes' grey level (a quarter of the ink is at least this inky), which becomes full ink.
    public var strokeLevel = 0

    public static func == (lhs: PreprocessingReport, rhs: PreprocessingReport) -> Bool {
        lhs.sourceWidth == rhs.sourceWidth && lhs.sourceHeight == rhs.sourceHeight && lhs.paperLevel == rhs.paperLevel
            && lhs.inkLevel == rhs.inkLevel && lhs.wasInverted == rhs.wasInverted && lhs.threshold == rhs.threshold
            && lhs.keptRegionCount == rhs.keptRegionCount && lhs.speckCount == rhs.speckCount
            && lhs.cropBox == rhs.cropBox && lhs.placedBox == rhs.placedBox
            && lhs.centreOfMass.x == rhs.centreOfMass.x && lhs.centreOfMass.y == rhs.centreOfMass.y
            && lhs.correctedLighting == rhs.correctedLighting && lhs.erasedLines == rhs.erasedLines
            && lhs.strokeLevel == rhs.strokeLevel
    }
}

extension PreprocessingReport: CustomStringConvertible {
    /// A few lines for `--show`: what was found at each step.
    public var description: String {
        let polarity = wasInverted ? "dark ink on light paper (inverted)" : "light ink on dark paper"
        let centre = String(format: "(%.2f, %.2f)", centreOfMass.x, centreOfMass.y)
        var lines: [String] = [
            "source \(sourceWidth)x\(sourceHeight), paper grey \(paperLevel), ink grey \(inkLevel) "
                + "(strokes \(strokeLevel)): \(polarity)"
        ]
        if let range = correctedLighting {
            lines.append("uneven lighting evened out (the paper ranged over \(range) grey levels)")
        }
        if erasedLines > 0 { lines.append("\(erasedLines) ruled line(s) erased") }
        let threshold = String(format: "%.2f", threshold)
        lines.append(
            "ink threshold \(threshold), \(keptRegionCount) ink region(s) kept, \(speckCount) speck(s) removed")
        lines.append(
            "ink box \(cropBox) scaled to \(placedBox.width)x\(placedBox.height), "
                + "placed at (\(placedBox.x), \(placedBox.y)), centre of mass \(centre)")
        return lines.joined(separator: "\n")
    }
}

/// An MNIST-like input: light ink on black, in a square frame (28x28 by default).
public struct PreprocessedDigit: Sendable, Equatable {
    /// The frame's side in pixels.
    public let side: Int
    /// Intensities 0 (background) ... 1 (full ink), row-major: `[side, side]`.
    public let pixels: [Float]
    /// What was found and decided on the way.
    public let report: PreprocessingReport

    /// The pixels as bytes 0...255 (rounded), the encoding of the MNIST IDX files: `[side, side]`.
    public var bytes: [UInt8] { pixels.map { UInt8(($0 * 255).rounded()) } }

    /// A text picture of the input, one line per row, shades " .:-=+*#%@" (see `TextPicture`).
    public var textPicture: String { TextPicture.render(pixels, width: side, height: side) }
}

/// A connected region of ink the preprocessor kept (not a speck).
public struct InkRegion: Sendable, Equatable {
    /// Its label in `InkMap`'s label image.
    public var label: Int32
    /// Its bounding box in the source image.
    public var box: PixelRectangle
    /// Its pixels above the ink threshold.
    public var seedCount: Int
}

/// What the preprocessor's first steps found in a whole image: the ink (0...1, light on black), its
/// regions, and the report so far. Steps 4 and 5 (`MNISTPreprocessor.frame`) turn some or all of the
/// regions into a 28x28 input: all of them for one digit, one group at a time for a number.
public struct InkMap: Sendable {
    public let width: Int
    public let height: Int
    /// The grey image after the photo steps: `[height, width]`. A pixel's ink is `inkLevels[grey]`
    /// inside a kept region (a byte per pixel, not a float: a 50-megapixel upload stays affordable).
    public let grey: [UInt8]
    /// Ink (0...1) per grey level.
    public let inkLevels: [Float]
    /// Region label per pixel (0 = none): `[height, width]`.
    public let labels: [Int32]
    /// The kept regions, in the order they were found (top to bottom, left to right).
    public let regions: [InkRegion]
    /// What was found, with the crop box of all the kept ink (no placement yet).
    public let report: PreprocessingReport

    /// The ink at pixel `index` (row-major), whatever region it is in; 0 outside any.
    public func ink(at index: Int) -> Float { labels[index] == 0 ? 0 : inkLevels[Int(grey[index])] }
}

/// Turns an arbitrary decoded image into a 28x28 MNIST-like input. A pure function of its input.
///
/// Steps, as MNIST was made (LeCun et al.): (1) grey with alpha composited over white; (2)
/// polarity from the image itself: the paper level is the median of the border pixels, and the ink
/// is whichever robust extreme (the level passed by `robustExtremeFraction` of the pixels from the
/// dark or the light end) lies farther from it; the image is turned to light ink on black and
/// contrast-stretched so paper = 0 and ink = 1; (3) ink = hysteresis threshold: pixels above an
/// Otsu threshold seed regions that grow (8-connected) through pixels above a low threshold set
/// just above the paper's noise (twice the spread of the border's 5% most ink-like pixels, at most
/// `lowThresholdRatio` times the Otsu threshold); regions whose seed area is under `speckFraction`
/// of the largest one are specks and are erased, as is everything outside the kept regions; crop
/// to the kept regions' bounding box; (4) scale so the longer side is `boxSize` pixels by exact area averaging (every output pixel
/// is the mean of the source over its footprint; along the shorter side the image covers a
/// fractional number of pixels, centred, and the partly covered edge pixels are proportionally
/// dimmer); (5) place in the frame with the rounded shift that brings the centre of mass nearest
/// the frame centre, clipped so the box stays inside the frame.
///
/// Properties the tests hold it to: a 28x28 MNIST-like digit comes back nearly unchanged; inverting
/// the input changes the output by at most a rounding step; a transparent-background image equals
/// the same drawing on white; the centre of mass lands within 0.51 px of the centre on each axis
/// (0.5 plus the tie rule of `roundedShift`) unless clipping prevents it.
public struct MNISTPreprocessor: Sendable {
    /// Tunable constants; the defaults reproduce MNIST's geometry.
    public struct Options: Sendable {
        /// The output side (28 for MNIST); at least `boxSize`.
        public var frameSize = 28
        /// The longer side of the scaled ink (20 for MNIST); at least 1.
        public var boxSize = 20
        /// Below this ink-to-paper contrast (0...255) the image is blank.
        public var minimumContrast = 24
        /// Fraction of the pixels ignored at each extreme when finding the ink level (noise, specks).
        public var robustExtremeFraction = 0.00005
        /// The highest low hysteresis threshold, as a fraction of the Otsu threshold (used when the
        /// paper is noisy; on clean paper the low threshold is just above the paper's noise).
        public var lowThresholdRatio: Float = 0.5
        /// A region whose above-threshold area is below this fraction of the largest one is a speck.
        public var speckFraction = 0.05

        public init() {}
    }

    public var options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    /// The 28x28 MNIST-like input for `image`. Throws `PreprocessingError.blankImage` when the
    /// image has no ink.
    public func preprocess(_ image: RasterImage) throws -> PreprocessedDigit {
        let map = try inkMap(image)
        return try frame(map, regions: Set(map.regions.map(\.label)))
    }

    /// Steps 1 to 3 on the whole image: its ink, cleaned, in labelled regions. Throws
    /// `PreprocessingError.blankImage` when the image has no ink.
    public func inkMap(_ image: RasterImage) throws -> InkMap {
        requireArgument(options.boxSize >= 1 && options.frameSize >= options.boxSize, "need 1 <= boxSize <= frameSize")
        let width = image.width
        let height = image.height
        // Step 1: grey over white. [height, width]
        var grey = image.greyCompositedOverWhite()

        // Step 2: polarity and contrast; for a photo, even lighting and no ruled lines first.
        var levels = Self.levels(
            grey, width: width, height: height, robustExtremeFraction: options.robustExtremeFraction)
        let lighting = LightingCorrection.correct(
            grey: grey, width: width, height: height, darkInk: levels.wasInverted, contrast: levels.contrast)
        if lighting.corrected {
            grey = lighting.grey
            levels = Self.levels(
                grey, width: width, height: height, robustExtremeFraction: options.robustExtremeFraction)
        }
        let lines = RuledLines.erase(
            grey: grey, width: width, height: height, darkInk: levels.wasInverted, paper: levels.paper,
            contrast: levels.contrast)
        if lines.horizontal + lines.vertical > 0 {
            grey = lines.grey
            levels = Self.levels(
                grey, width: width, height: height, robustExtremeFraction: options.robustExtremeFraction)
        }
        let (histogram, borderHistogram, paper, ink, wasInverted, contrast) = (
            levels.histogram, levels.borderHistogram, levels.paper, levels.ink, levels.wasInverted, levels.contrast
        )
        guard contrast >= max(1, options.minimumContrast) else {
            throw PreprocessingError.blankImage(contrast: contrast)
        }

        // Contrast stretch as a table over grey bytes: paper -> 0, ink -> 1, clamped.
        var stretch = [Float](repeating: 0, count: 256)
        for value in 0..<256 {
            let inkward = Float(wasInverted ? paper - value : value - paper)
            stretch[value] = min(1, max(0, inkward / Float(contrast)))
        }

        // Step 3: hysteresis threshold, regions, specks, crop.
        var stretchedHistogram = [Int](repeating: 0, count: 256)
        for value in 0..<256 { stretchedHistogram[Int((stretch[value] * 255).rounded())] += histogram[value] }
        let threshold = min(0.75, max(0.25, Float(Self.otsuThreshold(stretchedHistogram)) / 255))
        // The low threshold sits just above the paper's noise (the spread of the border pixels
        // towards the ink side), so clean anti-aliased edges are kept whole, capped at half the
        // ink threshold so that noisy paper never joins the ink.
        let borderCount = borderHistogram.reduce(0, +)
        let borderNoise =
            wasInverted
            ? paper - Self.level(in: borderHistogram, passing: max(1, borderCount / 20), fromDark: true)
            : Self.level(in: borderHistogram, passing: max(1, borderCount / 20), fromDark: false) - paper
        // The paper's noise is also read on the side away from the ink (lighter than the paper for dark
        // ink), where every pixel in the whole image is paper: a photo whose border happens to be its
        // quietest part (lit, where the middle was in a corrected shadow) still gets its noise measured.
        // paperSide[d]: pixels d levels from the paper away from the ink (256 bins, as `level` reads).
        var paperSide = [Int](repeating: 0, count: 256)
        for distance in 0..<256 {
            let value = wasInverted ? paper + distance : paper - distance
            if (0..<256).contains(value) { paperSide[distance] = histogram[value] }
        }
        let paperSideNoise = Self.level(
            in: paperSide, passing: max(1, paperSide.reduce(0, +) * 95 / 100), fromDark: true)
        let lowThreshold = min(
            threshold * options.lowThresholdRatio,
            (2 * Float(max(0, borderNoise, paperSideNoise)) + 1) / Float(contrast))
        // 0 = background, 1 = faint ink (grows regions), 2 = ink (seeds regions).
        var inkClass = [UInt8](repeating: 0, count: 256)
        for value in 0..<256 {
            inkClass[value] = stretch[value] >= threshold ? 2 : (stretch[value] >= lowThreshold ? 1 : 0)
        }
        let regions = Self.findRegions(grey: grey, width: width, height: height, inkClass: inkClass)
        let largest = regions.seedCounts.max() ?? 0
        guard largest > 0 else { throw PreprocessingError.blankImage(contrast: contrast) }
        let speckLimit = max(1, Int((Double(largest) * options.speckFraction).rounded(.up)))
        // kept[label], label 0 = background.
        var kept = [Bool](repeating: false, count: regions.seedCounts.count + 1)
        var minX = width, minY = height, maxX = -1, maxY = -1
        var keptRegionCount = 0
        let speckCount = regions.seedCounts.filter { $0 > 0 && $0 < speckLimit }.count
        for (index, seeds) in regions.seedCounts.enumerated() where seeds >= speckLimit {
            kept[index + 1] = true
            keptRegionCount += 1
            let box = regions.boxes[index]
            minX = min(minX, box.x); minY = min(minY, box.y)
            maxX = max(maxX, box.x + box.width - 1); maxY = max(maxY, box.y + box.height - 1)
        }
        let cropBox = PixelRectangle(x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1)
        // The strokes' own level: a quarter of the kept ink (above the threshold) is at least this
        // inky. MNIST's strokes are saturated at their core; a photo's ink varies along the stroke
        // (noise, blur, JPEG, a pen running dry), and stretching to its darkest speck alone would
        // leave the whole digit pale. A drawing's strokes are at the extreme already.
        var seedHistogram = [Int](repeating: 0, count: 256)
        for y in cropBox.y..<(cropBox.y + cropBox.height) {
            for x in cropBox.x..<(cropBox.x + cropBox.width) where kept[Int(regions.labels[y * width + x])] {
                let value = Int(grey[y * width + x])
                if inkClass[value] == 2 { seedHistogram[value] += 1 }
            }
        }
        let strokeLevel = Self.level(
            in: seedHistogram, passing: max(1, seedHistogram.reduce(0, +) / 4), fromDark: wasInverted)
        let strokeContrast = Float(max(1, abs(strokeLevel - paper)))
        var output = [Float](repeating: 0, count: 256)
        for value in 0..<256 {
            output[value] = min(1, max(0, Float(wasInverted ? paper - value : value - paper) / strokeContrast))
        }
        let keptRegions = regions.seedCounts.indices.filter { kept[$0 + 1] }.map {
            InkRegion(label: Int32($0 + 1), box: regions.boxes[$0], seedCount: regions.seedCounts[$0])
        }
        let report = PreprocessingReport(
            sourceWidth: width, sourceHeight: height, paperLevel: paper, inkLevel: ink,
            wasInverted: wasInverted, threshold: threshold, keptRegionCount: keptRegionCount, speckCount: speckCount,
            cropBox: cropBox, placedBox: PixelRectangle(x: 0, y: 0, width: 0, height: 0), centreOfMass: (0, 0),
            correctedLighting: lighting.corrected ? lighting.backgroundRange : nil,
            erasedLines: lines.horizontal + lines.vertical, strokeLevel: strokeLevel)
        return InkMap(
            width: width, height: height, grey: grey, inkLevels: output, labels: regions.labels, regions: keptRegions,
            report: report)
    }

    /// Steps 4 and 5 for the ink of some of `map`'s regions (by label), within `columns` if given: crop
    /// to that ink, scale, centre. Throws `PreprocessingError.blankImage` when there is none.
    public func frame(_ map: InkMap, regions: Set<Int32>, columns: Range<Int>? = nil) throws -> PreprocessedDigit {
        let columns = columns ?? 0..<map.width
        return try frame(
            map,
            [
                DigitSegment(
                    regions: regions, columns: columns,
                    box: PixelRectangle(x: columns.lowerBound, y: 0, width: columns.count, height: map.height))
            ])
    }

    /// Steps 4 and 5 for one digit of a number made of `parts`: each part's regions' ink within its
    /// columns and between its cuts (a digit can take the end of one group of ink, whole groups, and
    /// the start of another). Throws `PreprocessingError.blankImage` when there is no such ink.
    public func frame(_ map: InkMap, _ parts: [DigitSegment]) throws -> PreprocessedDigit {
        let width = map.width
        // Which part each label's region belongs to, -1 for none.
        var partOf = [Int](repeating: -1, count: (map.regions.map(\.label).max().map(Int.init) ?? 0) + 1)
        for (index, part) in parts.enumerated() {
            for label in part.regions where label > 0 && Int(label) < partOf.count { partOf[Int(label)] = index }
        }
        func owner(_ index: Int) -> Int {
            let label = Int(map.labels[index])
            return label < partOf.count ? partOf[label] : -1
        }
        let columns = parts.map { max(0, $0.columns.lowerBound)..<min(width, $0.columns.upperBound) }
        var minX = width, minY = map.height, maxX = -1, maxY = -1
        var restricted = false
        for region in map.regions where partOf[Int(region.label)] >= 0 {
            let part = partOf[Int(region.label)]
            let range = columns[part]
            restricted =
                restricted || parts[part].left != nil || parts[part].right != nil
                || region.box.x < range.lowerBound || region.box.x + region.box.width > range.upperBound
            minY = min(minY, region.box.y)
            maxY = max(maxY, region.box.y + region.box.height - 1)
            minX = min(minX, max(region.box.x, range.lowerBound))
            maxX = max(maxX, min(region.box.x + region.box.width, range.upperBound) - 1)
        }
        guard minX <= maxX, minY <= maxY else { throw PreprocessingError.blankImage(contrast: 0) }
        // Each part's columns on each row from minY: within its columns, right of its left cut and left
        // of its right one. [part][row]
        let rows = maxY - minY + 1
        var firstColumn = [Int](repeating: 0, count: restricted ? parts.count * rows : 0)
        var endColumn = firstColumn
        if restricted {
            for (index, part) in parts.enumerated() {
                for row in 0..<rows {
                    firstColumn[index * rows + row] = max(
                        columns[index].lowerBound, part.left?.column(atRow: minY + row) ?? columns[index].lowerBound)
                    endColumn[index * rows + row] = min(
                        columns[index].upperBound, part.right?.column(atRow: minY + row) ?? columns[index].upperBound)
                }
            }
        }
        func inside(_ x: Int, _ y: Int, _ part: Int) -> Bool {
            let index = part * rows + y - minY
            return x >= firstColumn[index] && x < endColumn[index]
        }
        // Rows and columns where a cut through a region leaves none of its ink are trimmed below.
        var cropBox = PixelRectangle(x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1)
        if restricted {
            var top = map.height, bottom = -1, leftmost = width, rightmost = -1
            for y in cropBox.y..<(cropBox.y + cropBox.height) {
                for x in cropBox.x..<(cropBox.x + cropBox.width) {
                    let part = owner(y * width + x)
                    if part >= 0, map.ink(at: y * width + x) > 0, inside(x, y, part) {
                        top = min(top, y); bottom = max(bottom, y)
                        leftmost = min(leftmost, x); rightmost = max(rightmost, x)
                    }
                }
            }
            guard top <= bottom else { throw PreprocessingError.blankImage(contrast: 0) }
            cropBox = PixelRectangle(x: leftmost, y: top, width: rightmost - leftmost + 1, height: bottom - top + 1)
        }
        // The cropped ink, everything outside the parts erased. [crop.height, crop.width]
        var cropped = [Float](repeating: 0, count: cropBox.width * cropBox.height)
        for y in 0..<cropBox.height {
            let row = (cropBox.y + y) * width + cropBox.x
            for x in 0..<cropBox.width {
                let part = owner(row + x)
                if part >= 0, !restricted || inside(cropBox.x + x, cropBox.y + y, part) {
                    cropped[y * cropBox.width + x] = map.ink(at: row + x)
                }
            }
        }

        // Step 4: scale the longer side to boxSize by area averaging.
        let scale = Double(options.boxSize) / Double(max(cropBox.width, cropBox.height))
        let scaled = AreaResampler.resample(cropped, width: cropBox.width, height: cropBox.height, scale: scale)

        // Step 5: centre of mass to the frame centre, rounded and clipped.
        let frame = options.frameSize
        var mass = 0.0, momentX = 0.0, momentY = 0.0
        for y in 0..<scaled.height {
            for x in 0..<scaled.width {
                let value = Double(scaled.pixels[y * scaled.width + x])
                mass += value
                momentX += value * (Double(x) + 0.5)
                momentY += value * (Double(y) + 0.5)
            }
        }
        guard mass > 0 else {
            throw PreprocessingError.blankImage(contrast: abs(map.report.inkLevel - map.report.paperLevel))
        }
        // MNIST's digits have their centre of mass on the centre of pixel (14, 14), that is at 14.5 in
        // these pixel-covering coordinates (the test set's mean, in pixel indices, is 14.00 and 13.99).
        // Aiming at the frame's geometric centre instead would shift every digit half a pixel up-left.
        let centre = Double(frame) / 2 + 0.5
        let offsetX = min(max(Self.roundedShift(centre - momentX / mass), 0), max(0, frame - scaled.width))
        let offsetY = min(max(Self.roundedShift(centre - momentY / mass), 0), max(0, frame - scaled.height))
        var pixels = [Float](repeating: 0, count: frame * frame)
        for y in 0..<min(scaled.height, frame) {
            for x in 0..<min(scaled.width, frame) {
                pixels[(y + offsetY) * frame + x + offsetX] = min(1, max(0, scaled.pixels[y * scaled.width + x]))
            }
        }

        var report = map.report
        report.keptRegionCount = map.regions.filter { partOf[Int($0.label)] >= 0 }.count
        report.cropBox = cropBox
        report.placedBox = PixelRectangle(x: offsetX, y: offsetY, width: scaled.width, height: scaled.height)
        report.centreOfMass = (momentX / mass + Double(offsetX), momentY / mass + Double(offsetY))
        return PreprocessedDigit(side: frame, pixels: pixels, report: report)
    }

    // MARK: - Steps, each a small pure function

    /// The grey levels the steps work from: histograms of the whole image and of its border, the
    /// paper (the border's median), the ink (the robust extreme farther from the paper) and polarity.
    struct Levels {
        var histogram: [Int]
        var borderHistogram: [Int]
        var paper: Int
        var ink: Int
        var wasInverted: Bool
        var contrast: Int
    }

    static func levels(_ grey: [UInt8], width: Int, height: Int, robustExtremeFraction: Double) -> Levels {
        let count = width * height
        var histogram = [Int](repeating: 0, count: 256)
        var borderHistogram = [Int](repeating: 0, count: 256)
        grey.withUnsafeBufferPointer { g in
            // The one loop over every pixel: a byte always indexes the 256 bins, so the bins are
            // reached through a buffer pointer (no bounds check to keep the loop from unrolling).
            histogram.withUnsafeMutableBufferPointer { bins in
                for i in 0..<count { bins[Int(g[i])] &+= 1 }
            }
            for x in 0..<width {
                borderHistogram[Int(g[x])] += 1
                if height > 1 { borderHistogram[Int(g[(height - 1) * width + x])] += 1 }
            }
            if height > 2 {
                for y in 1..<(height - 1) {
                    borderHistogram[Int(g[y * width])] += 1
                    if width > 1 { borderHistogram[Int(g[y * width + width - 1])] += 1 }
                }
            }
        }
        let paper = median(of: borderHistogram)
        let ignored = max(1, Int(Double(count) * robustExtremeFraction))
        let darkest = level(in: histogram, passing: ignored, fromDark: true)
        let lightest = level(in: histogram, passing: ignored, fromDark: false)
        let wasInverted = paper - darkest > lightest - paper
        let ink = wasInverted ? darkest : lightest
        let contrast = abs(ink - paper)
        return Levels(
            histogram: histogram, borderHistogram: borderHistogram, paper: paper, ink: ink, wasInverted: wasInverted,
            contrast: contrast)
    }

    /// `shift` rounded to the nearest integer, with near-ties (within 0.01 px of .5) going down.
    ///
    /// A left-right symmetric digit of odd width has its centre of mass exactly on a half pixel,
    /// where plain rounding would flip with the last bit of noise (8-bit quantisation, say); a
    /// fixed tie rule keeps such a digit where it is when it is preprocessed again.
    static func roundedShift(_ shift: Double) -> Int {
        Int((shift - 0.5 - 0.01).rounded(.up))
    }

    /// The median level of a 256-bin histogram (lower median for even counts).
    static func median(of histogram: [Int]) -> Int {
        let total = histogram.reduce(0, +)
        var seen = 0
        for (value, count) in histogram.enumerated() {
            seen += count
            if 2 * seen >= total { return value }
        }
        return 255
    }

    /// The first level, from the dark (or light) end, by which at least `count` pixels are passed.
    static func level(in histogram: [Int], passing count: Int, fromDark: Bool) -> Int {
        var seen = 0
        for step in 0..<256 {
            let value = fromDark ? step : 255 - step
            seen += histogram[value]
            if seen >= count { return value }
        }
        return fromDark ? 255 : 0
    }

    /// Otsu's threshold t (0...255): classes are levels <= t and > t, chosen to maximise the
    /// between-class variance. Returns 127 for a histogram with fewer than two occupied levels.
    static func otsuThreshold(_ histogram: [Int]) -> Int {
        let total = Double(histogram.reduce(0, +))
        var sumAll = 0.0
        for (value, count) in histogram.enumerated() { sumAll += Double(value * count) }
        var weightBelow = 0.0, sumBelow = 0.0
        var best = -1.0, bestThreshold = 127
        for t in 0..<255 {
            weightBelow += Double(histogram[t])
            sumBelow += Double(t * histogram[t])
            let weightAbove = total - weightBelow
            if weightBelow == 0 || weightAbove == 0 { continue }
            let meanBelow = sumBelow / weightBelow
            let meanAbove = (sumAll - sumBelow) / weightAbove
            let between = weightBelow * weightAbove * (meanBelow - meanAbove) * (meanBelow - meanAbove)
            if between > best {
                best = between
                bestThreshold = t
            }
        }
        return bestThreshold
    }

    /// 8-connected regions of pixels whose class is 1 or 2.
    struct Regions {
        /// Region label per pixel, 0 = background, region k has label k + 1: `[height, width]`.
        var labels: [Int32]
        /// Per region: the number of class-2 (seed) pixels.
        var seedCounts: [Int]
        /// Per region: the bounding box.
        var boxes: [PixelRectangle]
    }

    /// Labels the 8-connected regions of ink by flood fill (an explicit stack, no recursion).
    static func findRegions(grey: [UInt8], width: Int, height: Int, inkClass: [UInt8]) -> Regions {
        var labels = [Int32](repeating: 0, count: width * height)
        var seedCounts = [Int]()
        var boxes = [PixelRectangle]()
        var stack = [Int]()
        grey.withUnsafeBufferPointer { g in
            inkClass.withUnsafeBufferPointer { classOf in
                labels.withUnsafeMutableBufferPointer { label in
                    for start in 0..<(width * height) where label[start] == 0 && classOf[Int(g[start])] != 0 {
                        let current = Int32(seedCounts.count + 1)
                        var seeds = 0
                        var minX = width, minY = height, maxX = 0, maxY = 0
                        label[start] = current
                        stack.append(start)
                        while let index = stack.popLast() {
                            let y = index / width
                            let x = index - y * width
                            if classOf[Int(g[index])] == 2 { seeds += 1 }
                            minX = min(minX, x); maxX = max(maxX, x)
                            minY = min(minY, y); maxY = max(maxY, y)
                            for ny in max(0, y - 1)...min(height - 1, y + 1) {
                                for nx in max(0, x - 1)...min(width - 1, x + 1) {
                                    let neighbour = ny * width + nx
                                    if label[neighbour] == 0 && classOf[Int(g[neighbour])] != 0 {
                                        label[neighbour] = current
                                        stack.append(neighbour)
                                    }
                                }
                            }
                        }
                        seedCounts.append(seeds)
                        boxes.append(PixelRectangle(x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1))
                    }
                }
            }
        }
        return Regions(labels: labels, seedCounts: seedCounts, boxes: boxes)
    }
}
