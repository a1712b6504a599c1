//! Compiles the vendored kubelet PodResources v1 `api.proto` into a tonic client, with `protox`
//! (pure Rust: no `protoc` binary needed).

const INCLUDE: &str = "proto";
const PODRESOURCES: &str = "k8s.io/kubelet/pkg/apis/podresources/v1/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={INCLUDE}/{PODRESOURCES}");
    let fds = protox::compile([PODRESOURCES], [INCLUDE])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
