//! f32 matrix products on slices: the one place vstar calls the `gemm` crate (candle's matmul
//! goes through it too, but allocates, zeroes and handles only its own layouts).

/// A matrix inside a slice: element (i, j) at `i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// rows x cols with these strides, starting at `data[0]`; panics if it leaves the slice.
    pub fn new(data: &'a [f32], (rows, cols): (usize, usize), rs: usize, cs: usize) -> Self {
        let fits = rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < data.len();
        assert!(fits, "view outside its slice");
        Self { data, rows, cols, rs, cs }
    }

    /// Row-major rows x cols with row stride `rs`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self::new(data, (rows, cols), rs, 1)
    }

    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }
}

/// `dst = [dst +] beta * a b`, dst row-major a.rows x b.cols with row stride `dst_rs`.
/// `threads` > 1 splits the product over rayon's pool.
pub(crate) fn gemm_into(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: View, b: View, beta: f32, threads: usize) {
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len(), "gemm: destination outside its slice");
    // SAFETY: the views and the destination lie inside their slices (checked above and by
    // `View::new`); dst is a unique borrow so it overlaps neither operand.
    unsafe { raw(dst.as_mut_ptr(), dst_rs, accumulate, a, b, beta, threads) }
}

/// `a @ b` as fresh m x n row-major values (k = 0 gives zeros), on candle's thread count.
pub(crate) fn gemm_new(a: View, b: View) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    if a.cols == 0 {
        return vec![0f32; m * n];
    }
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: dst has room for m x n row-major values, which gemm writes all of (k > 0)
    // without reading any (accumulate false), so they are initialised before set_len.
    unsafe {
        raw(dst.as_mut_ptr(), n, false, a, b, 1.0, candle_core::utils::get_num_threads());
        dst.set_len(m * n);
    }
    dst
}

/// # Safety
/// `dst` must have room for a.rows rows of row stride `dst_rs` and b.cols columns, and must
/// not overlap the operands.
unsafe fn raw(dst: *mut f32, dst_rs: usize, accumulate: bool, a: View, b: View, beta: f32, threads: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner sizes differ");
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm::gemm(
        a.rows,
        b.cols,
        a.cols,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a.data.as_ptr(),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr(),
        b.cs as isize,
        b.rs as isize,
        1.0,
        beta,
        false,
        false,
        false,
        par,
    );
}
