//! Embedding throughput and CPU per text on this machine (`cargo bench --bench embed`; needs
//! scripts/fetch-assets.sh). Texts look like generated dialogues (about 150-250 tokens). The
//! default layout (`--embed_workers`/`--embed_threads` unset: one single-threaded session per
//! CPU this process may use), then the one it replaced (one session, a thread per CPU).

use std::time::Instant;

use dgen::embed::{assets_dir, cpus, Embedder, Parallelism};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

fn main() {
    let dir = assets_dir(None);
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
    let cpus = cpus::available();
    let default = Parallelism::resolve(None, None, cpus);
    let single = Parallelism::resolve(Some(1), None, cpus);
    for (label, p) in [("embedding:", default), ("  one session:", single)] {
        let mut embedders: Vec<Embedder> = Vec::new();
        for _ in 0..p.workers {
            match Embedder::load(&dir, p.threads) {
                Ok(e) => embedders.push(e),
                Err(e) => {
                    eprintln!("SKIPPED: {e:#}");
                    return;
                }
            }
        }
        for e in &mut embedders {
            e.embed(&texts[..4]).unwrap();
        }
        // Batches of 4, as `dgen run` forms them, each session taking the next one free.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let batches: Vec<&[String]> = texts.chunks(4).collect();
        let (cpu0, started) = (cpu_seconds(), Instant::now());
        std::thread::scope(|s| {
            for e in &mut embedders {
                let (next, batches) = (&next, &batches);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    std::hint::black_box(e.embed(batch).unwrap());
                });
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "{label} {} texts in {wall:.2} s = {:.1} texts/s, {:.1} ms CPU per text ({} sessions x {} threads, {cpus} CPUs available)",
            texts.len(),
            texts.len() as f64 / wall,
            1000.0 * cpu / texts.len() as f64,
            p.workers,
            p.threads,
        );
    }
}
