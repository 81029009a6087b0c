//! NT-Xent: exact values on hand-computed examples and gradients against finite differences.

use burn::tensor::{Tensor, TensorData};
use simclr::loss::{nt_xent, nt_xent_with};

fn tensor(rows: &[[f32; 2]]) -> Tensor<2> {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), 2]), &simclr::default_device())
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

/// Reference NT-Xent in f64 straight from eq. 1 of the paper, at the official code's scale: the sum
/// of ℓ over the 2N anchors divided by N (`mean(loss_a + loss_b)`).
fn reference(z: &[[f32; 2]], tau: f64) -> f64 {
    reference_with(z, tau, true)
}

/// [`reference`], on raw dot products without `l2_normalize` (paper Table 5, "ℓ2 norm: no").
fn reference_with(z: &[[f32; 2]], tau: f64, l2_normalize: bool) -> f64 {
    let n2 = z.len();
    let unit: Vec<[f64; 2]> = z
        .iter()
        .map(|r| {
            let norm = if l2_normalize { ((r[0] as f64).powi(2) + (r[1] as f64).powi(2)).sqrt() } else { 1.0 };
            [r[0] as f64 / norm, r[1] as f64 / norm]
        })
        .collect();
    let sim = |a: usize, b: usize| (unit[a][0] * unit[b][0] + unit[a][1] * unit[b][1]) / tau;
    let mut total = 0.0;
    for i in 0..n2 {
        let j = (i + n2 / 2) % n2;
        let denom: f64 = (0..n2).filter(|&k| k != i).map(|k| sim(i, k).exp()).sum();
        total += -(sim(i, j).exp() / denom).ln();
    }
    total / (n2 / 2) as f64
}

#[test]
fn two_pairs_of_identical_views_by_hand() {
    // Views (1,0),(0,1) | (1,0),(0,1): each anchor has similarity 1 to its positive and 0 to both
    // negatives, so with τ = 1 every ℓ = −log(e / (e + 2)) = ln(e + 2) − 1 = 0.551444…, and the
    // official loss_a + loss_b is twice that: 1.102889…
    let z = tensor(&[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
    let out = nt_xent(z, 1.0);
    let expected = 2.0 * ((std::f64::consts::E + 2.0).ln() - 1.0);
    let loss = scalar(out.loss) as f64;
    assert!((loss - expected).abs() < 1e-6, "loss {loss} vs {expected}");
    assert_eq!(scalar(out.accuracy), 1.0);
    // Official entropy: softmax of logits_ab, each first view against the 2 second views, (e, 1)/(e+1).
    let p = [std::f64::consts::E, 1.0].map(|v| v / (std::f64::consts::E + 1.0));
    let h: f64 = -p.iter().map(|p| p * (p + 1e-8).ln()).sum::<f64>();
    let entropy = scalar(out.entropy) as f64;
    assert!((entropy - h).abs() < 1e-5, "entropy {entropy} vs {h}");
}

#[test]
fn unnormalised_inputs_match_the_reference() {
    let rows = [[3.0, 0.5], [-1.0, 2.0], [2.0, 1.0], [0.5, -1.5]];
    for tau in [0.1, 0.5, 1.0] {
        let got = scalar(nt_xent(tensor(&rows), tau as f32).loss) as f64;
        let want = reference(&rows, tau);
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "tau {tau}: got {got}, want {want}");
    }
}

#[test]
fn contrastive_accuracy_counts_first_views_whose_second_view_ranks_first() {
    // Image 0's views agree; image 1's views point away from each other.
    let rows = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, -0.5]];
    let out = nt_xent(tensor(&rows), 0.5);
    // Official logits_ab: first views 0, 1 against second views 2, 3. View 0: its pair 2 (cos 0.995)
    // beats 3 (0.894): right. View 1: its pair 3 (cos −0.447) loses to 2 (0.0995): wrong. 1 of 2.
    assert_eq!(scalar(out.accuracy), 0.5);
    // Same-branch similarities take no part. View 1 is nearly view 0 (cos 0.9988), closer to it than
    // view 0's own pair 2 (cos 0.8), yet view 0 counts as right: 2 beats the other second view 3
    // (cos −1). View 1's pair 3 (cos −0.9988) loses to 2 (0.83): wrong. Official accuracy 1/2,
    // where ranking all 2N − 1 candidates of every anchor would give 0.
    let rows = [[1.0, 0.0], [1.0, 0.05], [0.8, 0.6], [-1.0, 0.0]];
    assert_eq!(scalar(nt_xent(tensor(&rows), 0.5).accuracy), 0.5);
}

#[test]
fn gradient_matches_finite_differences() {
    let rows = [[0.3, 1.2], [-0.7, 0.4], [0.9, -0.2], [0.1, 0.8], [-0.5, -0.6], [1.1, 0.3]];
    let tau = 0.5;
    let device = simclr::default_device().autodiff();
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    let z = Tensor::<2>::from_data(TensorData::new(data.clone(), [6, 2]), &device).require_grad();
    let grads = nt_xent(z.clone(), tau).loss.backward();
    let analytic: Vec<f32> = z.grad(&grads).unwrap().into_data().convert::<f32>().try_to_vec().unwrap();
    let h = 1e-2f64;
    for k in 0..data.len() {
        let eval = |delta: f64| {
            let mut r = rows;
            r[k / 2][k % 2] += delta as f32;
            reference(&r, tau as f64)
        };
        let numeric = (eval(h) - eval(-h)) / (2.0 * h);
        assert!(
            (analytic[k] as f64 - numeric).abs() < 1e-3,
            "d loss / d z[{k}]: autodiff {} vs finite differences {numeric}",
            analytic[k]
        );
    }
}

#[test]
fn without_l2_normalisation_the_logits_are_raw_dot_products() {
    let rows = [[3.0, 0.5], [-1.0, 2.0], [2.0, 1.0], [0.5, -1.5]];
    for tau in [1.0, 10.0] {
        let got = scalar(nt_xent_with(tensor(&rows), tau as f32, false).loss) as f64;
        let want = reference_with(&rows, tau, false);
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "tau {tau}: got {got}, want {want}");
        assert!((want - reference(&rows, tau)).abs() > 0.01, "the two objectives differ on these rows");
    }
    // Unit rows: normalising changes nothing.
    let unit = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]];
    let (a, b) = (scalar(nt_xent_with(tensor(&unit), 0.5, false).loss), scalar(nt_xent(tensor(&unit), 0.5).loss));
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

#[test]
#[should_panic(expected = "N >= 2")]
fn rejects_a_single_pair() {
    nt_xent(tensor(&[[1.0, 0.0], [0.0, 1.0]]), 0.5);
}

#[test]
fn each_ranks_rows_add_up_to_the_one_process_objective() {
    // Six images (12 views) as three ranks of two images would hold them: rank r's anchors are its
    // images' first and second views, rows 2r, 2r+1 and 6+2r, 7+2r of the global batch.
    let rows: Vec<[f32; 2]> = (0..12).map(|i| [((i * 7) % 5) as f32 - 2.0, ((i * 3) % 7) as f32 * 0.5 - 1.0]).collect();
    let whole = nt_xent(tensor(&rows), 0.5);
    let (mut loss, mut accuracy, mut entropy) = (0.0, 0.0, 0.0);
    for rank in 0..3 {
        let own: Vec<[f32; 2]> = [2 * rank, 2 * rank + 1, 6 + 2 * rank, 7 + 2 * rank].iter().map(|&r| rows[r]).collect();
        let views = simclr::views::Gathered { all: tensor(&rows), local: tensor(&own), offset: 2 * rank };
        assert_eq!((views.global_row(1), views.global_row(2)), (2 * rank + 1, 6 + 2 * rank));
        let part = simclr::loss::nt_xent_gathered(&views, 0.5, true);
        loss += scalar(part.loss);
        accuracy += scalar(part.accuracy);
        entropy += scalar(part.entropy);
    }
    let close = |a: f32, b: f32| (a - b).abs() < 1e-5 * b.abs().max(1.0);
    assert!(close(loss, scalar(whole.loss)) && (loss as f64 - reference(&rows, 0.5)).abs() < 1e-4, "loss {loss}");
    assert!(close(accuracy, scalar(whole.accuracy)) && close(entropy, scalar(whole.entropy)), "{accuracy} {entropy}");
}
