//! Compiles the kubelet PodResources v1 `api.proto` vendored by the receivers crate (the same
//! file its client is built from) into a tonic server for `FakeKubelet`, plus a client for
//! tests that talk to the fake directly. `protox`: no `protoc` binary needed.

const INCLUDE: &str = "../receivers/proto";
const PODRESOURCES: &str = "k8s.io/kubelet/pkg/apis/podresources/v1/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={INCLUDE}/{PODRESOURCES}");
    let fds = protox::compile([PODRESOURCES], [INCLUDE])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
