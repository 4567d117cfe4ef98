//! LMS test parts: the real LRS (npm `xapi-statements`) on loopback, and a TCP proxy
//! in front of a server that injects failures (down, HTTP errors, lost responses).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Learning Locker's statement service, in memory, bound to 127.0.0.1 only (the
/// preload `image/lrs/loopback.js` pins every listen() to loopback).
pub struct Lrs {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Lrs {
    pub fn start() -> Lrs {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("image/lrs");
        let server = root.join("node_modules/xapi-statements/dist/server.js");
        assert!(
            server.exists(),
            "the test LRS is not installed ({}): run ./image/dev-setup.sh --test",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("lrs.log")).unwrap();
        let child = Command::new("node")
            .arg("-r")
            .arg(root.join("loopback.js"))
            .arg(&server)
            .current_dir(dir.path())
            .env("EXPRESS_PORT", port.to_string())
            .env("MODELS_REPO", "memory")
            .env("AUTH_REPO", "test")
            .env("EVENTS_REPO", "test")
            .env("STORAGE_REPO", "local")
            .env("FS_LOCAL_STORAGE_DIR", dir.path())
            .env("LOG_MIN_LEVEL", "error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("node runs (installed by image/dev-setup.sh)");
        let mut lrs = Lrs { child, port, dir };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return lrs;
            }
            if let Ok(Some(status)) = lrs.child.try_wait() {
                panic!("the LRS exited ({status}): {}", lrs.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the LRS did not listen within 30 s: {}", lrs.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lrs.log")).unwrap_or_default()
    }

    pub fn xapi_url(&self) -> String {
        format!("http://127.0.0.1:{}/xAPI/", self.port)
    }

    /// Every statement the LRS holds.
    pub async fn statements(&self) -> Vec<serde_json::Value> {
        let http = reqwest::Client::new();
        let mut all = Vec::new();
        let mut next = format!("{}statements?limit=500", self.xapi_url());
        loop {
            let page: serde_json::Value = http
                .get(&next)
                .basic_auth("test", Some("test"))
                .header("X-Experience-API-Version", "1.0.3")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all.extend(page["statements"].as_array().cloned().unwrap_or_default());
            match page["more"].as_str() {
                Some(more) if !more.is_empty() => {
                    next = if more.starts_with("http") {
                        more.to_string()
                    } else {
                        format!("http://127.0.0.1:{}{more}", self.port)
                    }
                }
                _ => return all,
            }
        }
    }
}

impl Drop for Lrs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does with the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After`, if given) without forwarding.
    Status(u16, Option<u64>, &'static str),
    /// Forward the request, let the server act on it, then drop the connection before
    /// its answer reaches the client (the client cannot know it landed).
    LoseResponse,
}

/// A TCP proxy on 127.0.0.1 that can be down (port closed) or fault requests.
pub struct FaultProxy {
    pub addr: SocketAddr,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// The next multipart upload stalls after its head: the client times out mid-upload.
    stall_upload: Arc<std::sync::atomic::AtomicBool>,
    up: tokio::sync::watch::Sender<bool>,
    pub requests: Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults: Arc<Mutex<VecDeque<Fault>>> = Default::default();
        let (up, mut up_rx) = tokio::sync::watch::channel(true);
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stall_upload = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, r, st) = (faults.clone(), requests.clone(), stall_upload.clone());
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                match &listener {
                    Some(l) => tokio::select! {
                        accepted = l.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::spawn(serve(client, upstream, f.clone(), st.clone()));
                        }
                        changed = up_rx.changed() => {
                            if changed.is_err() { return; }
                            if !*up_rx.borrow() { listener = None; }
                        }
                    },
                    None => {
                        if up_rx.changed().await.is_err() {
                            return;
                        }
                        if *up_rx.borrow() {
                            listener = Some(TcpListener::bind(addr).await.unwrap());
                        }
                    }
                }
            }
        });
        FaultProxy {
            addr,
            faults,
            stall_upload,
            up,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    pub fn stall_next_upload(&self) {
        self.stall_upload
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the stall asked for has happened.
    pub fn upload_stalled(&self) -> bool {
        !self.stall_upload.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn push(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }
}

/// One connection: read the request head; a write (anything but GET) takes the next
/// fault, if any; reads (probes, look-before-append) always pass.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    stall_upload: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let multipart = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("content-type: multipart/");
    if multipart && stall_upload.swap(false, std::sync::atomic::Ordering::SeqCst) {
        // Take nothing more and answer nothing: the upload hangs until the client gives up.
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    let fault = if head.starts_with(b"GET ") {
        None
    } else {
        faults.lock().unwrap().pop_front()
    };
    match fault {
        None => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&head).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Some(Fault::Status(code, retry_after, body)) => {
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        Some(Fault::LoseResponse) => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&head).await.is_err() {
                return;
            }
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let forward = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            // Wait for the first byte of the answer: the server has acted. Then hang up.
            let mut byte = [0u8; 1];
            let _ = server_read.read(&mut byte).await;
            forward.abort();
            let _ = client_write.shutdown().await;
        }
    }
}
