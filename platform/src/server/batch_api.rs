//! gRPC face of the batch stage: `BatchService`. Runs a warehouse load on demand and
//! streams its progress.

use std::pin::Pin;
use std::sync::Arc;

use hospital_proto::batch::batch_service_server::BatchService;
use hospital_proto::batch::{GetWarehouseStatusRequest, RunProgress, RunWarehouseLoadRequest, WarehouseStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::batch::WarehouseLoader;
use crate::error::Error;

pub struct BatchApi {
    pub loader: Arc<WarehouseLoader>,
}

type ProgressStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<RunProgress, Status>> + Send>>;

#[tonic::async_trait]
impl BatchService for BatchApi {
    type RunWarehouseLoadStream = ProgressStream;

    #[tracing::instrument(skip_all)]
    async fn run_warehouse_load(
        &self,
        request: Request<RunWarehouseLoadRequest>,
    ) -> Result<Response<Self::RunWarehouseLoadStream>, Status> {
        let full_reload = request.into_inner().full_reload;
        let (progress_tx, mut progress_rx) = mpsc::channel::<RunProgress>(64);
        let (out_tx, out_rx) = mpsc::channel::<Result<RunProgress, Status>>(64);
        let loader = self.loader.clone();
        tokio::spawn(async move {
            let run = tokio::spawn(async move { loader.run(full_reload, Some(progress_tx)).await });
            while let Some(p) = progress_rx.recv().await {
                // A caller that went away does not stop the run.
                let _ = out_tx.send(Ok(p)).await;
            }
            match run.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = out_tx.send(Err(Status::from(e))).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "warehouse load task failed");
                    let _ = out_tx
                        .send(Err(Error::Internal(format!("warehouse load task: {e}")).into()))
                        .await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn get_warehouse_status(
        &self,
        _request: Request<GetWarehouseStatusRequest>,
    ) -> Result<Response<WarehouseStatus>, Status> {
        Ok(Response::new(self.loader.status().await?))
    }
}
