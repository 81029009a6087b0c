//! `simclr search`: exact and HNSW neighbours by cosine similarity over what `simclr embed` writes,
//! queried by row or by image file, with its bad-input errors; HNSW recall on 100k random vectors.

use simclr::commands::{EvalArgs, FeatureArgs, SplitArg};
use simclr::config::{DataArgs, ModelArgs, RunArgs};
use simclr::search::{recall, with_hnsw, Asked, Exact, Found, Hit, Hnsw, HnswParams, IndexKind, SearchArgs};
use std::path::Path;

const PARAMS: HnswParams = HnswParams { max_connections: 24, ef_construction: 200, ef_search: 128 };

#[test]
fn exact_search_ranks_by_cosine_on_a_hand_built_set() {
    // Vectors at 0°, 10°, 30°, 60°, 180° (of several lengths: cosine ignores them) and zero.
    let angle = |d: f32, r: f32| [r * d.to_radians().cos(), r * d.to_radians().sin()];
    let rows: Vec<f32> = [angle(0.0, 1.0), angle(10.0, 3.0), angle(30.0, 0.5), angle(60.0, 2.0), angle(180.0, 1.0), [0.0, 0.0]].concat();
    let exact = Exact::new(&rows, 2);
    let hits = exact.search(&angle(4.0, 7.0), 4, &[]).swap_remove(0);
    let rows_found: Vec<usize> = hits.iter().map(|h| h.row).collect();
    assert_eq!(rows_found, [0, 1, 2, 3]);
    for (h, want) in hits.iter().zip([4f32, 6.0, 26.0, 56.0]) {
        assert!((h.similarity - want.to_radians().cos()).abs() < 1e-6, "{h:?}");
    }
    // A row query leaves itself out; the zero row scores 0, the opposite vector -1, last.
    let all = exact.search(&angle(0.0, 1.0), 5, &[Some(0)]).swap_remove(0);
    assert_eq!(all.iter().map(|h| h.row).collect::<Vec<_>>(), [1, 2, 3, 5, 4]);
    assert!((all[4].similarity + 1.0).abs() < 1e-6);
}

#[test]
#[cfg_attr(any(feature = "tch", feature = "wgpu"), ignore = "backend-independent; runs in the flex suite")]
fn hnsw_recall_at_10_is_at_least_095_on_100k_random_vectors() {
    // Around 100 random centres, as embeddings gather by class: i.i.d. uniform vectors in 128-d,
    // with no neighbour much nearer than any other point, give 0.74 even at efSearch 400 (README).
    let (n, dim) = (100_000, 128);
    let data = simclr::bench::random_vectors(n, dim, 100, 1);
    let queries = simclr::bench::random_vectors(100, dim, 100, 2);
    let truth = Exact::new(&data, dim).search(&queries, 10, &[]);
    let found = Hnsw::build(&data, dim, PARAMS).search(&queries, dim, 10, &[]);
    let r = recall(&truth, &found);
    eprintln!("HNSW recall@10 on {n} × {dim}: {r:.4}");
    assert!(r >= 0.95, "recall@10 {r}");
}

/// `simclr embed` of the built-in test split (1,000 images) through a random-init ResNet-18 at
/// width 1/4 on 16 px inputs, into `out`.
fn embed(out: &Path) {
    let eval = EvalArgs {
        checkpoint: None,
        random_init: true,
        data: DataArgs::default(),
        model: ModelArgs { width: Some(0.25), image_size: Some(16), ..Default::default() },
        run: RunArgs { out: Some(out.to_path_buf()), ..Default::default() },
    };
    let features = FeatureArgs { layer: "h".parse().unwrap(), feature_cache: None };
    simclr::commands::embed(&eval, &features, SplitArg::Test, None, &simclr::default_device()).unwrap();
}

fn args(embeddings: &Path, query: &str, k: usize) -> SearchArgs {
    SearchArgs { embeddings: embeddings.to_path_buf(), query: query.into(), checkpoint: None, k, index: IndexKind::Exact, hnsw: PARAMS, png: None, json: None }
}

/// The hits a `simclr search` output lists: (row, similarity).
fn listed(found: &Found) -> Vec<(usize, f32)> {
    found.neighbours.iter().map(|n| (n.entry.row, n.similarity)).collect()
}

#[test]
fn search_by_row_and_by_image_file_over_embed_output() {
    let dir = tempfile::tempdir().unwrap();
    let emb = dir.path().join("emb");
    embed(&emb);
    let f = simclr::eval::embed::read(&emb).unwrap();
    assert_eq!((f.n, f.dim), (1000, 128));
    assert_eq!(simclr::eval::embed::read_index(&emb).unwrap().unwrap(), (0..1000).collect::<Vec<_>>());

    // By row: the k most similar other rows, as a brute-force cosine over features.npy says.
    let mut a = args(&emb, "17", 5);
    a.png = Some(dir.path().join("strip.png"));
    a.json = Some(dir.path().join("hits.json"));
    let out = simclr::search::search(&a, &simclr::default_device()).unwrap();
    assert!(matches!(&out.query, Asked::Row(e) if e.row == 17 && e.label.is_some()), "{out:?}");
    let row = |i: usize| &f.data[i * f.dim..(i + 1) * f.dim];
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let mut want: Vec<(usize, f64)> = (0..f.n).filter(|&i| i != 17).map(|i| (i, cos(row(17), row(i)))).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got = listed(&out);
    assert_eq!(got.len(), 5, "{out:?}");
    for ((row, sim), (want_row, want_sim)) in got.iter().zip(&want) {
        assert_eq!(row, want_row, "{out:?}");
        assert!((*sim as f64 - want_sim).abs() < 1e-3, "{out:?}");
    }
    let strip = image::open(dir.path().join("strip.png")).unwrap();
    assert_eq!((strip.width(), strip.height()), (6 * 100 + 4, 96 + 20 + 8), "query + 5 hits, 96 px cells");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("hits.json")).unwrap()).unwrap();
    assert_eq!(json["hits"][0]["row"], got[0].0);

    // HNSW (approximate: random levels, parallel insertion) finds at least 4 of the 5, from an
    // index built once and then reused.
    let mut h = args(&emb, "17", 5);
    h.index = IndexKind::Hnsw;
    let approx = listed(&simclr::search::search(&h, &simclr::default_device()).unwrap());
    let found = approx.iter().filter(|(row, _)| got.iter().any(|(r, _)| r == row)).count();
    assert!(found >= 4, "{approx:?} vs exact {got:?}");
    assert!(emb.join("hnsw.json").exists());
    let (_, built) = with_hnsw(&emb, &f.data, f.dim, PARAMS, |_| ()).unwrap();
    assert!(!built, "the saved index is reused");
    let (_, built) = with_hnsw(&emb, &f.data, f.dim, HnswParams { max_connections: 12, ..PARAMS }, |_| ()).unwrap();
    assert!(built, "other parameters build it again");

    // By image file: test image 17 written as PNG is found at row 17 with cosine 1, embedded by
    // the network report.json describes (here the seeded random init).
    let img = simclr::data::open(&Default::default(), simclr::data::Split::Test).unwrap().image(17).unwrap();
    let file = dir.path().join("query.png");
    image::RgbImage::from_raw(img.width as u32, img.height as u32, img.to_u8_hwc()).unwrap().save(&file).unwrap();
    let out = simclr::search::search(&args(&emb, file.to_str().unwrap(), 3), &simclr::default_device()).unwrap();
    let hits = listed(&out);
    assert_eq!(hits[0].0, 17, "{out:?}");
    assert!((hits[0].1 - 1.0).abs() < 1e-4, "{out:?}");
}

#[test]
fn bad_search_input_is_an_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = |a: &SearchArgs| format!("{:#}", simclr::search::search(a, &simclr::default_device()).unwrap_err());
    let e = err(&args(dir.path(), "0", 3));
    assert!(e.contains("no features.npy") && e.contains("simclr embed"), "{e}");
    let emb = dir.path().join("emb");
    embed(&emb);
    let e = err(&args(&emb, "1000", 3));
    assert!(e.contains("--query 1000: out of range") && e.contains("0 … 999"), "{e}");
    let e = err(&args(&emb, "3", 1000));
    assert!(e.contains("-k 1000: choose 1 … 999"), "{e}");
    let e = err(&args(&emb, "3", 0));
    assert!(e.contains("-k 0"), "{e}");
    let e = err(&args(&emb, "no-such-image.png", 3));
    assert!(e.contains("no-such-image.png"), "{e}");
    // An image query through a network of another width (h of 64 values, not 128).
    let run = dir.path().join("run");
    let mut cfg = simclr::config::Config::default();
    cfg.model.width = 0.125;
    cfg.model.image_size = 16;
    cfg.optim.max_steps = 1;
    cfg.optim.batch_size = 8;
    cfg.data.limit = 8;
    cfg.run.out = run.clone();
    simclr::pretrain::pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    let img = dir.path().join("q.png");
    image::RgbImage::new(16, 16).save(&img).unwrap();
    let mut a = args(&emb, img.to_str().unwrap(), 3);
    a.checkpoint = Some(run);
    let e = err(&a);
    assert!(e.contains("64 values but the embeddings have 128"), "{e}");
}

#[test]
fn recall_is_the_share_of_exact_hits_found() {
    let hit = |row| Hit { row, similarity: 0.0 };
    assert_eq!(recall(&[vec![hit(1), hit(2)]], &[vec![hit(2), hit(3)]]), 0.5);
}
