//! Prints the metadata and tensor table of a GGUF file.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: gguf_info FILE")?;
    let g = downshift_slm::Gguf::open(&path)?;
    for (k, v) in &g.metadata {
        let s = match v {
            downshift_slm::MetaValue::Array(a) => {
                format!("[{} items] {:?}", a.len(), &a[..a.len().min(5)])
            }
            downshift_slm::MetaValue::String(s) if s.len() > 300 => format!("{:?}...", &s[..300]),
            v => format!("{v:?}"),
        };
        println!("{k} = {s}");
    }
    for t in &g.tensors {
        println!("{} {:?} {:?}", t.name, t.shape(), t.ggml_type);
    }
    Ok(())
}
