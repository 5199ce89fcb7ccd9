//! gRPC face of ingest: `IngestService`. Thin: decode, hand to [`crate::ingest`], submit
//! to the staging writer, answer after the commit.

use std::pin::Pin;

use hospital_proto::ingest::ingest_service_server::IngestService;
use hospital_proto::ingest::{IngestRequest, IngestResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::ingest::{self, IngestOptions, PendingAck};
use crate::staging::{PendingCommit, WriterHandle};

pub struct IngestApi {
    pub writer: WriterHandle,
    pub options: IngestOptions,
    pub max_in_flight: usize,
    pub shutdown: CancellationToken,
}

type AckStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<IngestResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    type IngestStream = AckStream;

    #[tracing::instrument(skip_all)]
    async fn ingest(&self, request: Request<Streaming<IngestRequest>>) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel::<Result<IngestResponse, Status>>(self.max_in_flight);
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<(PendingAck, PendingCommit), Error>>(self.max_in_flight);
        let writer = self.writer.clone();
        let options = self.options;
        let shutdown = self.shutdown.clone();

        // Reader: validate each request and queue its rows for the group commit. The
        // pending queue bounds how many requests of this stream wait for a commit.
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        let _ = pending_tx.send(Err(Error::ShuttingDown)).await;
                        return;
                    }
                    next = inbound.message() => next,
                };
                let request = match next {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(status) => {
                        // A message that is not an IngestRequest is answered, in order
                        // after the acks before it; a stream the sender broke off is not.
                        match Error::from_inbound(&status) {
                            Some(e) => {
                                tracing::info!(error = %e, "ingest stream sent an undecodable request");
                                let _ = pending_tx.send(Err(e)).await;
                            }
                            None => tracing::debug!(%status, "ingest stream closed by the sender"),
                        }
                        return;
                    }
                };
                let item = match ingest::prepare(request, &options) {
                    Err(e) => Err(e),
                    Ok(prepared) => writer
                        .submit(prepared.rows)
                        .await
                        .map(|pending| (prepared.ack, pending)),
                };
                let failed = item.is_err();
                if pending_tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });

        // Acker: answer requests in order, each only after its commit returned. The
        // first failure ends the stream; requests after it stay unanswered, to be resent.
        tokio::spawn(async move {
            while let Some(item) = pending_rx.recv().await {
                let answer = match item {
                    Ok((ack, pending)) => pending.wait().await.map(|commit| ack.acknowledge(commit)),
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(ack) => {
                        if out_tx.send(Ok(ack)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ingest stream ends");
                        let _ = out_tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
            }
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn ingest_batch(&self, request: Request<IngestRequest>) -> Result<Response<IngestResponse>, Status> {
        let prepared = ingest::prepare(request.into_inner(), &self.options)?;
        if prepared.rows.is_empty() && !prepared.ack.rejections.is_empty() {
            return Err(prepared.ack.all_rejected_error().into());
        }
        let commit = self.writer.commit(prepared.rows).await?;
        Ok(Response::new(prepared.ack.acknowledge(commit)))
    }
}
