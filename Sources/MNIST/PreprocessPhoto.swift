// The two steps of the MNIST preprocessing that only photos need, each a pure function on a grey
// image: evening out the lighting (a gradient across the page, a shadow) and erasing the lines of
// ruled or squared paper. Both leave an image with even lighting and no lines exactly as it was, so a
// scan or a drawing is preprocessed as before. Deliberately left out: perspective correction, colour
// (a blue line and a blue pen are told apart by shape here, not hue), and curved lines.
import Foundation

/// Evens out uneven lighting by flat-fielding against the paper's own brightness.
///
/// The paper's brightness under the lighting (the background) is estimated on a copy scaled down to
/// about 128 pixels on its shorter side: a morphological closing (for dark ink: the brightest value
/// within a radius of 8% of the shorter side, then the darkest within the same radius) removes the
/// strokes, which are narrower than that, and keeps the edges of shadows where they are. Lighting
/// multiplies the paper's reflectance, and the camera's tone curve is a power that keeps products
/// products, so dark ink on light paper is corrected by division: `grey * level / background`. Light
/// ink on dark paper, a screen's rather than a photo's, is corrected by subtraction (with an opening).
///
/// Under uneven lighting the border's median no longer tells the paper from the ink (a shadow over
/// the border makes the lit paper look like light ink), so the ink's polarity is decided here by shape:
/// for dark ink the closing is the smooth one (the opening fills the paper between the strokes and
/// leaves a blob of ink's darkness), for light ink the opening.
public enum LightingCorrection {
    /// The result: the corrected image and how uneven the lighting was.
    public struct Result: Sendable {
        public var grey: [UInt8]
        /// The background's range (brightest minus darkest, 0...255) before correction.
        public var backgroundRange: Int
        /// Whether the image was changed.
        public var corrected: Bool
    }

    /// Images with a shorter side under this are left alone (a scan or a drawing, not a photo).
    public static let minimumSide = 64

    /// `grey` (`[height, width]`) with its lighting evened out when the background's range is at least
    /// `threshold` of the ink's `contrast` (and 12 levels); otherwise `grey` itself. `darkInk` is the
    /// polarity the border gave, kept when the lighting is even.
    public static func correct(
        grey: [UInt8], width: Int, height: Int, darkInk: Bool, contrast: Int, threshold: Double = 0.1
    ) -> Result {
        guard min(width, height) >= minimumSide else {
            return Result(grey: grey, backgroundRange: 0, corrected: false)
        }
        // Scale down by an integer factor to about 128 pixels on the shorter side, by block means.
        let factor = max(1, min(width, height) / 128)
        let smallWidth = (width + factor - 1) / factor, smallHeight = (height + factor - 1) / factor
        var small = [Float](repeating: 0, count: smallWidth * smallHeight)
        var rowSums = [Float](repeating: 0, count: smallWidth)
        for blockY in 0..<smallHeight {
            let rows = (blockY * factor)..<min(height, (blockY + 1) * factor)
            for index in rowSums.indices { rowSums[index] = 0 }
            for y in rows {
                for blockX in 0..<smallWidth {
                    var sum: Float = 0
                    for x in (blockX * factor)..<min(width, (blockX + 1) * factor) { sum += Float(grey[y * width + x]) }
                    rowSums[blockX] += sum
                }
            }
            for blockX in 0..<smallWidth {
                let columns = min(width, (blockX + 1) * factor) - blockX * factor
                small[blockY * smallWidth + blockX] = rowSums[blockX] / Float(rows.count * columns)
            }
        }
        let radius = max(2, Int((0.08 * Double(min(smallWidth, smallHeight))).rounded()))
        func range(_ values: [Float]) -> Int { Int(((values.max() ?? 0) - (values.min() ?? 0)).rounded()) }
        let needed = max(12, threshold * Double(contrast))
        // The border's polarity first: when its background is even, so is the lighting.
        let assumed = smooth(small, width: smallWidth, height: smallHeight, radius: radius, darkInk: darkInk)
        let assumedRange = range(assumed)
        guard Double(assumedRange) >= needed else {
            return Result(grey: grey, backgroundRange: assumedRange, corrected: false)
        }
        // The ink's polarity: the filter that takes the strokes out leaves a smooth background, the
        // other one leaves a blob where the digit is (an opening fills the paper between dark
        // strokes), so the background with the smaller range is the right one.
        let other = smooth(small, width: smallWidth, height: smallHeight, radius: radius, darkInk: !darkInk)
        let otherRange = range(other)
        let dark = otherRange < assumedRange ? !darkInk : darkInk
        let background = dark == darkInk ? assumed : other
        let backgroundRange = min(assumedRange, otherRange)
        guard Double(backgroundRange) >= needed else {
            return Result(grey: grey, backgroundRange: backgroundRange, corrected: false)
        }
        // The paper level the corrected image is brought to: the brightest background for dark ink
        // (division can then only darken), the darkest for light ink.
        let level = dark ? (background.max() ?? 0) : (background.min() ?? 0)
        // Bilinear between the centres of the small pixels: the columns' weights once, then a row of
        // background at a time.
        let columns = (0..<width).map { x -> (Int, Int, Float) in
            let sx = min(max((Float(x) + 0.5) / Float(factor) - 0.5, 0), Float(smallWidth - 1))
            let x0 = Int(sx)
            return (x0, min(x0 + 1, smallWidth - 1), sx - Float(x0))
        }
        var paperRow = [Float](repeating: 0, count: width)
        var corrected = [UInt8](repeating: 0, count: grey.count)
        for y in 0..<height {
            let sy = min(max((Float(y) + 0.5) / Float(factor) - 0.5, 0), Float(smallHeight - 1))
            let y0 = Int(sy), y1 = min(y0 + 1, smallHeight - 1), fy = sy - Float(y0)
            for x in 0..<width {
                let (x0, x1, fx) = columns[x]
                let top = background[y0 * smallWidth + x0] * (1 - fx) + background[y0 * smallWidth + x1] * fx
                let bottom = background[y1 * smallWidth + x0] * (1 - fx) + background[y1 * smallWidth + x1] * fx
                paperRow[x] = top * (1 - fy) + bottom * fy
            }
            for x in 0..<width {
                let value = Float(grey[y * width + x])
                let even = dark ? value * level / max(paperRow[x], 1) : value - paperRow[x] + level
                corrected[y * width + x] = UInt8(min(255, max(0, even) + 0.5))
            }
        }
        return Result(grey: corrected, backgroundRange: backgroundRange, corrected: true)
    }

    /// The background under dark ink (a closing: max then min) or light ink (an opening: min then
    /// max), on the image padded by repeating its edge pixels: a shadow's straight edge that meets the
    /// border then stays straight (windows cut at the border would round it off into false ink).
    static func smooth(_ values: [Float], width: Int, height: Int, radius: Int, darkInk: Bool) -> [Float] {
        let pad = 2 * radius
        let paddedWidth = width + 2 * pad, paddedHeight = height + 2 * pad
        var padded = [Float](repeating: 0, count: paddedWidth * paddedHeight)
        for y in 0..<paddedHeight {
            let source = min(height - 1, max(0, y - pad)) * width
            for x in 0..<paddedWidth { padded[y * paddedWidth + x] = values[source + min(width - 1, max(0, x - pad))] }
        }
        padded = extremeFilter(padded, width: paddedWidth, height: paddedHeight, radius: radius, maximum: darkInk)
        padded = extremeFilter(padded, width: paddedWidth, height: paddedHeight, radius: radius, maximum: !darkInk)
        var result = [Float](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width { result[y * width + x] = padded[(y + pad) * paddedWidth + x + pad] }
        }
        return result
    }

    /// The largest (or smallest) value within `radius` in each direction (a square window), as two
    /// one-dimensional passes; the window is cut at the edges.
    static func extremeFilter(_ values: [Float], width: Int, height: Int, radius: Int, maximum: Bool) -> [Float] {
        // The smallest is the negated largest of the negated values.
        var image = maximum ? values : values.map { -$0 }
        var line = [Float](), filtered = [Float]()
        for y in 0..<height {
            line.removeAll(keepingCapacity: true)
            line.append(contentsOf: image[(y * width)..<((y + 1) * width)])
            slidingMaximum(line, radius: radius, into: &filtered)
            for x in 0..<width { image[y * width + x] = filtered[x] }
        }
        for x in 0..<width {
            line.removeAll(keepingCapacity: true)
            for y in 0..<height { line.append(image[y * width + x]) }
            slidingMaximum(line, radius: radius, into: &filtered)
            for y in 0..<height { image[y * width + x] = filtered[y] }
        }
        return maximum ? image : image.map { -$0 }
    }

    /// `result[i]` = the largest of `values[i-radius...i+radius]` (cut at the ends), in three
    /// comparisons per value whatever the radius (van Herk and Gil-Werman): in blocks as long as the
    /// window, running maxima from each block's start and from its end; a window spans at most two
    /// blocks, the end of one and the start of the next.
    static func slidingMaximum(_ values: [Float], radius: Int, into result: inout [Float]) {
        let window = 2 * radius + 1
        // values[i] is at padded[i + radius]; the padding is -infinity.
        let count = ((values.count + 2 * radius + window - 1) / window) * window
        var fromStart = [Float](repeating: -.infinity, count: count)
        var fromEnd = [Float](repeating: -.infinity, count: count)
        for i in 0..<count {
            let value = (radius..<(radius + values.count)).contains(i) ? values[i - radius] : -.infinity
            fromStart[i] = i % window == 0 ? value : max(fromStart[i - 1], value)
        }
        for i in stride(from: count - 1, through: 0, by: -1) {
            let value = (radius..<(radius + values.count)).contains(i) ? values[i - radius] : -.infinity
            fromEnd[i] = i % window == window - 1 ? value : max(fromEnd[i + 1], value)
        }
        result.removeAll(keepingCapacity: true)
        for i in 0..<values.count {
            // The window [i, i + 2 * radius] in padded positions.
            result.append(max(fromEnd[i], fromStart[i + 2 * radius]))
        }
    }
}

/// Finds and erases the lines of ruled or squared paper: thin straight lines that cross the whole
/// image, at least two of them parallel (one line across a tightly cropped digit may be its stroke).
///
/// Faint ink (a tenth of the ink's contrast) is projected along 17 slants from -4 to 4 degrees; a line
/// is a run of at most 1/60 of the image's height (and at least 3) projected rows in which at least 55% of the image's width is
/// faint ink, on the slant where the projection has its tallest row. Where a line crosses a stroke
/// (ink just above or just below it) it is kept; elsewhere its pixels, and one row either side for its
/// blurred edge, become paper. Vertical lines are found the same way on the transposed image.
public enum RuledLines {
    /// The image without its lines, and how many were erased in each direction.
    public struct Result: Sendable {
        public var grey: [UInt8]
        public var horizontal: Int
        public var vertical: Int
    }

    /// `grey` without ruled lines; `paper` is the paper's level, `contrast` the ink's distance from it.
    public static func erase(
        grey: [UInt8], width: Int, height: Int, darkInk: Bool, paper: Int, contrast: Int
    ) -> Result {
        guard min(width, height) >= LightingCorrection.minimumSide, contrast > 0 else {
            return Result(grey: grey, horizontal: 0, vertical: 0)
        }
        // Ink strength per grey level, 0 = paper.
        let strength = (0..<256).map { darkInk ? paper - $0 : $0 - paper }
        var result = grey
        let rows = eraseLines(
            &result, width: width, height: height, alongRows: true, strength: strength, paper: UInt8(paper),
            contrast: contrast)
        let columns = eraseLines(
            &result, width: width, height: height, alongRows: false, strength: strength, paper: UInt8(paper),
            contrast: contrast)
        return Result(grey: result, horizontal: rows, vertical: columns)
    }

    /// Erases the lines running along the rows (or, `alongRows` false, down the columns) of `grey`, in
    /// place; returns how many. "Along" is the lines' direction, "across" the other one.
    static func eraseLines(
        _ grey: inout [UInt8], width: Int, height: Int, alongRows: Bool, strength: [Int], paper: UInt8,
        contrast: Int
    ) -> Int {
        let length = alongRows ? width : height, span = alongRows ? height : width
        func index(_ along: Int, _ across: Int) -> Int { alongRows ? across * width + along : along * width + across }
        let faint = max(8, contrast / 10)
        let strong = max(faint + 1, contrast * 35 / 100)
        // The faint ink's positions, once: a photo is mostly paper.
        var alongs: [Int32] = [], acrosses: [Int32] = []
        for y in 0..<height {
            for x in 0..<width where strength[Int(grey[y * width + x])] >= faint {
                alongs.append(Int32(alongRows ? x : y))
                acrosses.append(Int32(alongRows ? y : x))
            }
        }
        let needed = Int((0.55 * Double(length)).rounded(.up))
        guard alongs.count >= 2 * needed else { return 0 }
        let slants = (-8...8).map { tan(Double($0) * 0.5 * .pi / 180) }
        // Projected position of (along, across) on a slant: across - round((along - length/2) * slope),
        // offset to be >= 0.
        let pad = Int((Double(length) * tan(4.5 * .pi / 180)).rounded(.up)) + 1
        let projectedCount = span + 2 * pad
        func shifts(_ slope: Double) -> [Int] { (0..<length).map { Int((Double($0 - length / 2) * slope).rounded()) } }
        var bestSlant = 0, bestCounts: [Int] = [], bestPeak = 0
        for (slant, slope) in slants.enumerated() {
            let shift = shifts(slope)
            var counts = [Int](repeating: 0, count: projectedCount)
            for i in alongs.indices { counts[Int(acrosses[i]) - shift[Int(alongs[i])] + pad] += 1 }
            let peak = counts.max() ?? 0
            if peak > bestPeak {
                bestPeak = peak
                bestSlant = slant
                bestCounts = counts
            }
        }
        guard bestPeak >= needed else { return 0 }
        let maximumThickness = max(3, span / 60)
        var lines: [ClosedRange<Int>] = []
        var start: Int?
        for row in 0...projectedCount {
            let flagged = row < projectedCount && bestCounts[row] >= needed
            if flagged, start == nil { start = row }
            if !flagged, let first = start {
                if row - first <= maximumThickness { lines.append(first...(row - 1)) }
                start = nil
            }
        }
        guard lines.count >= 2 else { return 0 }
        let shift = shifts(slants[bestSlant])
        for line in lines {
            for along in 0..<length {
                // The line's extent across at this point, one more either side for its edge.
                let low = line.lowerBound - pad + shift[along] - 1
                let high = line.upperBound - pad + shift[along] + 1
                func inked(_ across: Int) -> Bool {
                    (0..<span).contains(across) && strength[Int(grey[index(along, across)])] >= strong
                }
                // Ink just beside the line: a stroke crosses or touches it here, and stays whole.
                if inked(low - 1) || inked(low - 2) || inked(high + 1) || inked(high + 2) { continue }
                let first = max(0, low), last = min(span - 1, high)
                if first <= last { for across in first...last { grey[index(along, across)] = paper } }
            }
        }
        return lines.count
    }
}
