//! Memory order of the encoder's activations on flex: Burn's `[batch, c, h, w]` (NCHW), or
//! channels-last — `[batch, h, w, c]` in memory, Burn's shape kept as a permuted view — which the
//! direct convolutions read and write without a transpose and the residual end takes as it is
//! (`--memory-format channels-last`, [`crate::ops::compute::MemoryFormat`]). Every other
//! operation (BN included: it copies its input to NCHW) reads such a view through its strides, so
//! the order changes speed, never results.

/// Where each value of a `[batch, c, h, w]` tensor lies in its storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `[batch, c, h, w]`, row-major (Burn's own).
    Nchw,
    /// `[batch, h, w, c]`, row-major: each pixel's channels side by side.
    Nhwc,
}

/// `t`'s values stored channels-last, its shape `[batch, c, h, w]` kept: a copy (of which the
/// gradient flows back to `t`), as the convolutions hand on their output under
/// `--memory-format channels-last`.
pub fn stored_channels_last(t: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
    let [n, c, h, w] = t.dims();
    // A reshape of the permuted view copies it in its logical order: `[n, h, w, c]`.
    t.permute([0, 2, 3, 1]).reshape([n * h * w * c]).reshape([n, h, w, c]).permute([0, 3, 1, 2])
}

#[cfg(feature = "flex")]
pub(crate) use flex::*;

#[cfg(feature = "flex")]
mod flex {
    use super::Order;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{Shape, TensorData};

    /// The order of `t` when its storage holds exactly its values, from the first, in NCHW
    /// (any rank: row-major) or, for a 4-dimensional tensor, NHWC order; `None` for any other
    /// view (a slice, a broadcast, another permutation).
    pub fn order_of(t: &FlexTensor) -> Option<Order> {
        let layout = t.layout();
        let whole = layout.start_offset() == 0 && t.storage::<f32>().len() == layout.num_elements();
        match () {
            _ if !whole => None,
            _ if layout.is_contiguous() => Some(Order::Nchw),
            _ if layout.num_dims() == 4 && layout.permute(&[0, 2, 3, 1]).is_contiguous() => Some(Order::Nhwc),
            _ => None,
        }
    }

    /// `t` itself where its storage holds its values in an [`Order`], else a row-major copy.
    pub fn dense(t: FlexTensor) -> (FlexTensor, Order) {
        match order_of(&t) {
            Some(order) => (t, order),
            None => (t.to_contiguous(), Order::Nchw),
        }
    }

    /// `t` with its values stored in `order` (a copy unless they are already).
    pub fn in_order(t: &FlexTensor, order: Order) -> FlexTensor {
        match (order_of(t), order) {
            (Some(current), _) if current == order => t.clone(),
            (_, Order::Nchw) => t.to_contiguous(),
            (_, Order::Nhwc) => t.permute(&[0, 2, 3, 1]).to_contiguous().permute(&[0, 3, 1, 2]),
        }
    }

    /// A tensor of `shape` whose values are `values` stored in `order`.
    pub fn from_values(values: Vec<f32>, shape: Shape, order: Order) -> FlexTensor {
        match order {
            Order::Nchw => FlexTensor::from_data(TensorData::new(values, shape)),
            Order::Nhwc => {
                let [n, c, h, w] = shape.dims();
                FlexTensor::from_data(TensorData::new(values, [n, h, w, c])).permute(&[0, 3, 1, 2])
            }
        }
    }

    /// The `f32` values of a tensor of known order, in storage order.
    pub fn values(t: &FlexTensor) -> &[f32] {
        debug_assert!(order_of(t).is_some());
        t.storage::<f32>()
    }
}
