//! Embedding throughput and CPU per text on this machine (`cargo bench --bench embed`; needs
//! scripts/fetch-assets.sh). Texts look like generated dialogues (about 150-250 tokens).

use std::time::Instant;

use dgen::embed::{assets_dir, Embedder};

/// utime + stime of this process, in seconds, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let dir = assets_dir(None);
    let mut embedder = match Embedder::load(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIPPED: {e:#}");
            return;
        }
    };
    let texts: Vec<String> = (0..256)
        .map(|i| {
            (0..5)
                .map(|t| {
                    format!(
                        "USER: About order {i}-{t}, the delivery to the north gate was late and the receipt shows a double charge of {} euros.\nASSISTANT: I am sorry about order {i}-{t}; I refunded the duplicate charge and booked a courier for {} o'clock.\n",
                        10 + i % 50,
                        1 + (i + t) % 12
                    )
                })
                .collect()
        })
        .collect();
    embedder.embed(&texts[..16]).unwrap();
    let (cpu0, started) = (cpu_seconds(), Instant::now());
    for chunk in texts.chunks(16) {
        std::hint::black_box(embedder.embed(chunk).unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "embedding: {} texts in {wall:.2} s = {:.1} texts/s, {:.1} ms CPU per text",
        texts.len(),
        texts.len() as f64 / wall,
        1000.0 * cpu / texts.len() as f64
    );
}
