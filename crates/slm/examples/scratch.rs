use downshift_slm::*;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("model")?;
    let t0 = std::time::Instant::now();
    let g = Gguf::open(&path)?;
    let mut m = Llama::from_gguf(&g)?;
    if std::env::var("NEOX").is_ok() { m.config.rope_style = RopeStyle::Neox; }
    if std::env::var("DENSE").is_ok() {
        for b in &mut m.blocks {
            for l in b.qkv.iter_mut().chain(b.gate_up.iter_mut()).chain([&mut b.o, &mut b.down]) {
                l.weight = Weight::Dense(l.weight.dequantize()?);
            }
        }
        m.lm_head.weight = Weight::Dense(m.lm_head.weight.dequantize()?);
    }
    let kvd = if std::env::var("KV32").is_ok() { KvDtype::F32 } else { KvDtype::F16 };
    drop(g);
    eprintln!("load {:?}", t0.elapsed());
    let fx = std::fs::read_to_string("crates/slm/tests/fixtures/greedy_smollm2.jsonl")?;
    for line in fx.lines().take(2) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let ids: Vec<u32> = v["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let want: Vec<u32> = v["tokens"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let mut cache = m.new_cache(2048, kvd);
        let t0 = std::time::Instant::now();
        let mut logits = m.forward(&ids, &mut cache, AdapterSel::None, Logits::Last)?;
        let tp = t0.elapsed();
        {
            let l: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            for e in v["top"][0].as_array().unwrap() {
                let id = e[0].as_u64().unwrap() as usize; let val = e[1].as_f64().unwrap();
                print!("[{id}: ref {val:.3} ours {:.3}] ", l[id]);
            }
            println!();
        }
        let mut got = vec![];
        let t1 = std::time::Instant::now();
        for _ in 0..want.len() {
            let l: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            let mut best = 0; for i in 0..l.len() { if l[i] > l[best] { best = i; } }
            got.push(best as u32);
            logits = m.forward(&[best as u32], &mut cache, AdapterSel::None, Logits::Last)?;
        }
        let td = t1.elapsed();
        println!("prefill {} tok {:.1} tok/s, decode {:.1} tok/s, match {}", ids.len(), ids.len() as f64 / tp.as_secs_f64(), want.len() as f64 / td.as_secs_f64(), got == want);
        println!(" got  {:?}\n want {:?}", &got[..8], &want[..8]);
    }
    Ok(())
}
