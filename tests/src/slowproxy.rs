//! A TCP forwarder on 127.0.0.1 that delays every chunk the upstream sends,
//! so a pull through it lasts long enough to be interrupted mid-way.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Result;

/// Forwards 127.0.0.1:`port()` to an upstream address; stops accepting on drop.
pub struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    /// Forward to `upstream`, sleeping `delay` before relaying each chunk
    /// of the upstream's answers.
    pub fn start(upstream: SocketAddr, delay: Duration) -> Result<SlowProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let stop3 = stop2.clone();
                        thread::spawn(move || {
                            let _ = relay(client, upstream, delay, stop3);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(SlowProxy { port, stop })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    delay: Duration,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(upstream)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s_read.read(&mut buf)?;
        if n == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        thread::sleep(delay);
        c_write.write_all(&buf[..n])?;
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
