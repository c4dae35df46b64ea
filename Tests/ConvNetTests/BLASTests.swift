// The OpenBLAS shim: a small product checked against values worked out by hand.
import ConvNet
import XCTest

final class BLASTests: XCTestCase {
    /// A = [[1, 2, 3], [4, 5, 6]], B = [[7, 8], [9, 10], [11, 12]]:
    /// A·B = [[1·7+2·9+3·11, 1·8+2·10+3·12], [4·7+5·9+6·11, 4·8+5·10+6·12]] = [[58, 64], [139, 154]].
    func testSmallProductAgainstHandComputedValues() {
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Float] = [7, 8, 9, 10, 11, 12]
        var c = [Float](repeating: -1, count: 4)
        BLAS.sgemm(m: 2, n: 2, k: 3, a: a, b: b, c: &c)
        XCTAssertEqual(c, [58, 64, 139, 154])

        // Aᵀ stored as [[1, 4], [2, 5], [3, 6]] with transposeA, and alpha/beta: 2·A·B + 1·C.
        let aTransposed: [Float] = [1, 4, 2, 5, 3, 6]
        BLAS.sgemm(transposeA: true, m: 2, n: 2, k: 3, alpha: 2, a: aTransposed, b: b, beta: 1, c: &c)
        XCTAssertEqual(c, [174, 192, 417, 462])

        // Bᵀ stored as [[7, 9, 11], [8, 10, 12]] with transposeB.
        let bTransposed: [Float] = [7, 9, 11, 8, 10, 12]
        BLAS.sgemm(transposeB: true, m: 2, n: 2, k: 3, a: a, b: bTransposed, c: &c)
        XCTAssertEqual(c, [58, 64, 139, 154])
    }
}
