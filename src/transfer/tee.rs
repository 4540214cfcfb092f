//! The bridge between a download and the streamed upload of the same bytes: a bounded channel
//! that feeds the upload's body, so a slow upload slows the download and memory per piece stays a
//! few chunks.

/// Where a streamed download also sends its bytes: the upload's body, gathered into 256 KiB pieces
/// (network reads arrive in small chunks; one copy saves most of the per-chunk channel and socket
/// work).
pub(super) struct Tee {
    pub tx: futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    pub pending: bytes::BytesMut,
    pub alive: bool,
}

impl Tee {
    pub async fn push(&mut self, chunk: &[u8]) {
        use futures::SinkExt;
        if !self.alive {
            return;
        }
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= 256 * 1024
            && self
                .tx
                .send(Ok(self.pending.split().freeze()))
                .await
                .is_err()
        {
            // The upload gave up; the download goes on into the spill file, uploaded from after.
            self.alive = false;
        }
    }

    /// Sends what is left and ends the body.
    pub async fn finish(mut self) {
        use futures::SinkExt;
        if self.alive && !self.pending.is_empty() {
            let _ = self.tx.send(Ok(self.pending.split().freeze())).await;
        }
    }

    /// Ends the body with an error: the client then drops the request, and Swift discards it.
    pub async fn abort(mut self) {
        use futures::SinkExt;
        let _ = self
            .tx
            .send(Err(std::io::Error::other("download failed")))
            .await;
    }
}
