//! The embedding map (`simclr embed --map`, `simclr plot-embeddings`, `simclr::eval::map`): the
//! projection on the first two principal components keeps the distances of points that lie in a
//! plane of a higher-dimensional space (so it is that plane, whatever its orientation), puts the
//! direction of largest spread first, and refuses non-finite or too few rows; the map of an
//! `embed` folder is a PNG with the class names of its dataset.

use simclr::eval::map::{pca2, plot_folder};
use simclr::eval::Features;

/// 300 points in the plane spanned by two orthonormal directions of R^16, offset from the origin:
/// spread 3 along the first, 1 along the second.
fn planar() -> Features {
    let (n, dim) = (300, 16);
    let u: Vec<f32> = (0..dim).map(|i| if i < 4 { 0.5 } else { 0.0 }).collect();
    let v: Vec<f32> = (0..dim).map(|i| if (4..8).contains(&i) { 0.5 } else { 0.0 }).collect();
    let mut data = Vec::with_capacity(n * dim);
    for k in 0..n {
        let (a, b) = (3.0 * ((k as f32) * 0.37).sin(), ((k as f32) * 1.13).cos());
        data.extend((0..dim).map(|i| 2.0 + a * u[i] + b * v[i]));
    }
    Features { data, n, dim, labels: (0..n).map(|k| k % 3).collect() }
}

#[test]
fn the_projection_of_points_in_a_plane_keeps_their_distances_largest_spread_first() {
    let f = planar();
    let points = pca2(&f).unwrap();
    assert_eq!(points.len(), f.n);
    let row = |r: usize| &f.data[r * f.dim..(r + 1) * f.dim];
    for i in (0..f.n).step_by(7) {
        for j in (0..f.n).step_by(11) {
            let want: f32 = row(i).iter().zip(row(j)).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
            let got = ((points[i].1 - points[j].1).powi(2) + (points[i].2 - points[j].2).powi(2)).sqrt();
            assert!((got - want).abs() < 1e-3 * want.max(1.0), "rows {i}, {j}: {got} vs {want}");
        }
    }
    let spread = |pick: fn(&(usize, f32, f32)) -> f32| points.iter().map(|p| pick(p).powi(2)).sum::<f32>();
    assert!(spread(|p| p.1) > 4.0 * spread(|p| p.2), "PC 1 has the larger spread");
}

#[test]
fn too_few_or_non_finite_rows_are_refused() {
    let mut f = planar();
    f.data[5 * 16 + 3] = f32::NAN;
    assert!(pca2(&f).unwrap_err().to_string().contains("row 5"));
    let two = Features { data: vec![0.0; 8], n: 2, dim: 4, labels: vec![] };
    assert!(pca2(&two).is_err());
    // A label that is no class index (a hostile labels.npy's −1 read as 2⁶⁴ − 1) is refused.
    let mut f = planar();
    f.labels[7] = usize::MAX;
    let dir = tempfile::tempdir().unwrap();
    let err = simclr::eval::map::draw(&pca2(&f).unwrap(), &f, &[], "t", &dir.path().join("m.png")).unwrap_err().to_string();
    assert!(err.contains("at most 100 classes"), "{err}");
}

#[test]
fn an_embed_folder_is_drawn_as_a_png() {
    let dir = tempfile::tempdir().unwrap();
    simclr::eval::embed::write(&planar(), dir.path()).unwrap();
    std::fs::write(dir.path().join("report.json"), r#"{"settings": {"data": {"dataset": "fashion-mnist"}}, "metrics": {"layer": "h"}}"#).unwrap();
    let png = dir.path().join("map.png");
    assert_eq!(plot_folder(dir.path(), &png).unwrap(), 300);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (900, 720));
    // Three classes in three colours, and white background around them.
    let colours: std::collections::HashSet<[u8; 3]> = img.to_rgb8().pixels().map(|p| p.0).collect();
    assert!(colours.len() > 4, "{} colours", colours.len());
}
