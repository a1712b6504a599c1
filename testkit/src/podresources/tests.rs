use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::proto::pod_resources_lister_client::PodResourcesListerClient;
use super::proto::{AllocatableResourcesRequest, GetPodResourcesRequest, ListPodResourcesRequest};
use super::*;

async fn client(socket: &Path) -> PodResourcesListerClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to the fake kubelet");
    PodResourcesListerClient::new(channel)
}

fn pods() -> Vec<FakePod> {
    vec![
        FakePod::with_gpus("ml", "trainer-0", "main", &["GPU-a", "GPU-b"]),
        FakePod {
            namespace: "infra".into(),
            name: "net".into(),
            containers: vec![FakeContainer {
                name: "agent".into(),
                devices: vec![("example.com/nic".into(), vec!["nic-0".into()])],
                ..Default::default()
            }],
        },
    ]
}

#[tokio::test]
async fn answers_list_get_and_allocatable_from_the_scripted_pods() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(&socket, pods()).await;
    let mut c = client(&socket).await;
    assert_eq!(kubelet.first_list_at(), None, "no List call yet");

    let before_first = std::time::Instant::now();
    let list = c
        .list(ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list
        .pod_resources
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(names, ["ml/trainer-0", "infra/net"]);
    let gpus = &list.pod_resources[0].containers[0].devices[0];
    assert_eq!(gpus.resource_name, "nvidia.com/gpu");
    assert_eq!(gpus.device_ids, ["GPU-a", "GPU-b"]);
    assert_eq!(kubelet.list_calls(), 1);
    let after_first = std::time::Instant::now();
    let first = kubelet.first_list_at().expect("first List recorded");
    assert!(
        before_first <= first && first <= after_first,
        "first_list_at lies within the first List round trip"
    );

    let got = c
        .get(GetPodResourcesRequest {
            pod_name: "trainer-0".into(),
            pod_namespace: "ml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.pod_resources.unwrap().containers[0].name, "main");
    let missing = c
        .get(GetPodResourcesRequest {
            pod_name: "trainer-0".into(),
            pod_namespace: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let allocatable = c
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    let by_resource: Vec<_> = allocatable
        .devices
        .iter()
        .map(|d| (d.resource_name.as_str(), d.device_ids.len()))
        .collect();
    assert_eq!(by_resource, [("example.com/nic", 1), ("nvidia.com/gpu", 2)]);
    assert_eq!(kubelet.list_calls(), 1, "only List calls are counted");

    kubelet.set_pods(vec![FakePod::with_gpus("ml", "eval-0", "main", &["GPU-c"])]);
    let list = c
        .list(ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.pod_resources.len(), 1);
    assert_eq!(list.pod_resources[0].name, "eval-0");
    assert_eq!(kubelet.list_calls(), 2);
    assert_eq!(
        kubelet.first_list_at(),
        Some(first),
        "later List calls keep the first instant"
    );

    kubelet.stop().await;
    assert!(!socket.exists(), "stop removes the socket like the kubelet");
}

#[tokio::test]
async fn start_replaces_a_socket_left_by_a_previous_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let previous = FakeKubelet::start(&socket, vec![]).await;
    client(&socket)
        .await
        .list(ListPodResourcesRequest {})
        .await
        .unwrap();
    assert!(previous.first_list_at().is_some());
    drop(previous);
    assert!(
        socket.exists(),
        "a dropped fake leaves its socket, like a crashed kubelet"
    );
    let kubelet = FakeKubelet::start(&socket, pods()).await;
    assert_eq!(
        kubelet.first_list_at(),
        None,
        "a new server instance has answered no List yet"
    );
    let list = client(&socket)
        .await
        .list(ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.pod_resources.len(), 2);
    assert!(kubelet.first_list_at().is_some());
    kubelet.stop().await;
}

#[tokio::test]
async fn serves_shared_replicas_index_ids_and_dra_claims_in_the_real_proto() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_devices("a", "one", "main", NVIDIA_GPU_SHARED, &["GPU-s::0"]),
            FakePod::with_devices("b", "two", "main", NVIDIA_GPU_SHARED, &["GPU-s::1"]),
            FakePod::with_gpus("c", "idx", "main", &["0", "1:0"]),
            FakePod::with_dra_gpus("d", "dra", "main", "node-1", "gpus", &["gpu-0"]),
        ],
    )
    .await;

    let list = client(&socket)
        .await
        .list(ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();

    let devices = |i: usize| &list.pod_resources[i].containers[0].devices;
    assert_eq!(devices(0)[0].resource_name, "nvidia.com/gpu.shared");
    assert_eq!(devices(0)[0].device_ids, ["GPU-s::0"]);
    assert_eq!(
        devices(1)[0].device_ids,
        ["GPU-s::1"],
        "one GPU in two pods"
    );
    assert_eq!(devices(2)[0].device_ids, ["0", "1:0"]);
    let dra = &list.pod_resources[3].containers[0];
    assert!(dra.devices.is_empty());
    assert_eq!(dra.dynamic_resources.len(), 1);
    let claim = &dra.dynamic_resources[0];
    assert_eq!(
        (claim.claim_namespace.as_str(), claim.claim_name.as_str()),
        ("d", "gpus")
    );
    let r = &claim.claim_resources[0];
    assert_eq!(
        (
            r.driver_name.as_str(),
            r.pool_name.as_str(),
            r.device_name.as_str()
        ),
        ("gpu.nvidia.com", "node-1", "gpu-0")
    );
    assert_eq!(
        r.cdi_devices[0].name,
        "k8s.gpu.nvidia.com/claim=uid-gpus-gpu-0"
    );
    assert_eq!(r.share_id, None);
    kubelet.stop().await;
}
