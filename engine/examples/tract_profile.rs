//! Where tract spends its time on a model: wall time per operator type over a few runs on
//! zero inputs of the declared shapes. A development tool for the backend, not a benchmark.
//!
//!     cargo run -p vigil-engine --example tract_profile -- engine/models/ped2-bdfi/model.onnx [RUNS]
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use vigil_engine::backend::onnx::read_interface;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: tract_profile MODEL.onnx [RUNS]")?;
    let runs: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let iface = read_interface(std::path::Path::new(path))?;
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    for (i, spec) in iface.inputs.iter().enumerate() {
        model.set_input_fact(i, f32::fact(spec.shape.clone()).into())?;
    }
    let plan = model.into_optimized()?.into_runnable()?;
    let mut state = plan.spawn()?;
    let inputs: TVec<TValue> = iface
        .inputs
        .iter()
        .map(|s| Tensor::zero::<f32>(&s.shape).map(|t| t.into_tvalue()))
        .collect::<TractResult<_>>()?;
    let mut per_op: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    let mut total = Duration::ZERO;
    for run in 0..=runs {
        let t0 = Instant::now();
        let mut this: Vec<(String, Duration)> = Vec::new();
        state.run_plan_with_eval(inputs.clone(), |ctx, st, node, input| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(ctx, st, node, input);
            this.push((node.op().name().to_string(), t.elapsed()));
            r
        })?;
        if run > 0 {
            // run 0 warms caches and allocations
            total += t0.elapsed();
            for (op, d) in this {
                let e = per_op.entry(op).or_default();
                e.0 += d;
                e.1 += 1;
            }
        }
    }
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
    println!(
        "{runs} runs, {:.1} ms per run",
        total.as_secs_f64() * 1e3 / runs as f64
    );
    for (op, (d, n)) in rows {
        println!(
            "{:<28} {:>8.2} ms/run {:>5.1}%  ({} nodes)",
            op,
            d.as_secs_f64() * 1e3 / runs as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64(),
            n / runs
        );
    }
    Ok(())
}
