//! Routes of the local API, called in-process through the router.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use appliance_agent::api::{self, ApiState};
use appliance_agent::auth::{AllowedHosts, Auth, TokenStore};
use appliance_agent::boot_state::{BootState, SecureBoot, Tpm};
use appliance_agent::config::Config;
use appliance_agent::detect::{Container, Detection};
use appliance_agent::inference::service::{EngineChoice, EngineSettings, ServiceState};
use appliance_agent::vault::service::VaultService;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tower::ServiceExt;

use support::{detect_fixture, fixture};

fn state(relative: &str, gpu_passthrough_config: bool) -> Arc<ApiState> {
    let mut config = Config::default();
    config.vm.gpu_passthrough = gpu_passthrough_config;
    Arc::new(state_with(detect_fixture(&fixture(relative)), config))
}

fn state_with(detection: Detection, config: Config) -> ApiState {
    ApiState::new(
        detection,
        config,
        PathBuf::from("/nonexistent/appliance-test/appliance.yaml"),
        enforcing_boot(),
        None,
        no_tokens(),
        no_vault_state(),
    )
}

/// Authentication with an empty token store, for routes that need no token.
fn no_tokens() -> Arc<Auth> {
    let store = TokenStore::new(PathBuf::from("/nonexistent/appliance-test/tokens.json"));
    Arc::new(Auth::new(store, AllowedHosts::new(&[], &[])).expect("random CSRF key"))
}

/// The vault service as `serve` starts it when early boot recorded nothing.
fn no_vault_state() -> Arc<VaultService> {
    VaultService::load(std::path::PathBuf::from("/nonexistent/appliance-state"))
}

fn enforcing_boot() -> BootState {
    BootState {
        secure_boot: SecureBoot::Enforcing,
        tpm: Tpm {
            present: true,
            version: Some("2".to_owned()),
            device: Some("/dev/tpmrm0".to_owned()),
        },
    }
}

async fn call(state: Arc<ApiState>, method: Method, path: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8480")
        .body(Body::empty())
        .expect("valid request");
    let response = api::router(state)
        .oneshot(request)
        .await
        .expect("router response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/json", "{path}");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

async fn vm_status(relative: &str, gpu_passthrough_config: bool) -> Map<String, Value> {
    let (status, body) = call(
        state(relative, gpu_passthrough_config),
        Method::GET,
        "/api/vm/status",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body.as_object().expect("object body").clone()
}

fn keys(object: &Map<String, Value>) -> Vec<&str> {
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

fn notice_details(body: &Map<String, Value>) -> Vec<String> {
    body["security_notice"]["details"]
        .as_array()
        .expect("details list")
        .iter()
        .map(|detail| detail.as_str().expect("detail string").to_owned())
        .collect()
}

fn assert_shape(body: &Map<String, Value>) {
    assert_eq!(
        keys(body),
        [
            "gpu_passthrough",
            "hardening",
            "hypervisor",
            "is_vm",
            "security_notice",
            "sizing",
            "tpm",
            "vm_gpu_enabled"
        ]
    );
    assert!(body["is_vm"].is_boolean());
    assert!(body["hypervisor"].is_string());
    assert!(body["gpu_passthrough"].is_boolean());
    assert!(body["vm_gpu_enabled"].is_boolean());

    let notice = body["security_notice"].as_object().expect("notice object");
    assert_eq!(keys(notice), ["details", "level", "title"]);
    assert!(notice["level"].is_string());
    assert!(notice["title"].is_string());
    for detail in notice_details(body) {
        assert!(detail.ends_with('.'), "not a full sentence: {detail}");
        assert!(
            detail.starts_with(|c: char| c.is_ascii_uppercase()),
            "not a full sentence: {detail}"
        );
    }
}

fn has_detail(details: &[String], start: &str) -> bool {
    details.iter().any(|detail| detail.starts_with(start))
}

#[tokio::test]
async fn vm_status_kvm_with_passthrough() {
    let body = vm_status("cases/a08-gpu-passthrough-in-kvm-guest", false).await;

    assert_shape(&body);
    assert_eq!(body["is_vm"], true);
    assert_eq!(body["hypervisor"], "kvm");
    assert_eq!(body["gpu_passthrough"], true);
    assert_eq!(body["vm_gpu_enabled"], false);
    assert_eq!(body["security_notice"]["level"], "warning");
    assert_eq!(
        body["security_notice"]["title"],
        "Running in a Virtual Machine (kvm)"
    );

    let details = notice_details(&body);
    assert!(
        has_detail(
            &details,
            "The host OS and hypervisor can read all VM memory"
        ),
        "{details:?}"
    );
    assert!(
        details.iter().any(|detail| detail.contains("LUKS")),
        "{details:?}"
    );
    assert!(
        has_detail(&details, "VM snapshots may capture decrypted secrets"),
        "{details:?}"
    );
    assert!(
        has_detail(&details, "Disable clipboard sharing"),
        "{details:?}"
    );
    assert!(
        has_detail(&details, "Co-located VMs may observe timing patterns"),
        "{details:?}"
    );
    assert!(
        details.iter().any(|detail| detail.contains("vTPM")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|detail| detail.contains("DMA")),
        "{details:?}"
    );
}

#[tokio::test]
async fn vm_gpu_enabled_follows_config() {
    let body = vm_status("cases/a08-gpu-passthrough-in-kvm-guest", true).await;

    assert_eq!(body["vm_gpu_enabled"], true);
    assert_eq!(body["gpu_passthrough"], true);
}

#[tokio::test]
async fn vm_without_gpu_has_no_dma_notice() {
    let body = vm_status("vm/kvm-q35", false).await;

    assert_shape(&body);
    assert_eq!(body["gpu_passthrough"], false);
    let details = notice_details(&body);
    assert_eq!(details.len(), 5, "{details:?}");
    assert!(
        !details.iter().any(|detail| detail.contains("DMA")),
        "{details:?}"
    );
}

#[tokio::test]
async fn unbound_passthrough_gpu_not_usable() {
    let mut detection: Detection =
        detect_fixture(&fixture("cases/a08-gpu-passthrough-in-kvm-guest"));
    detection.gpu.usable_gpus.clear();
    let state = Arc::new(state_with(detection, Config::default()));

    let (_, body) = call(state, Method::GET, "/api/vm/status").await;

    assert_eq!(body["gpu_passthrough"], false);
    // The GPU is still in the VM, so its memory is still visible to the host.
    let details = body["security_notice"]["details"]
        .as_array()
        .expect("details");
    assert!(details
        .iter()
        .any(|detail| detail.as_str().is_some_and(|text| text.contains("DMA"))));
}

#[tokio::test]
async fn vm_status_bare_metal() {
    let body = vm_status("vm/bare-metal-server", false).await;

    assert_shape(&body);
    assert_eq!(body["is_vm"], false);
    assert_eq!(body["hypervisor"], "none");
    assert_eq!(body["gpu_passthrough"], false);
    // On bare metal the GPU is used, whatever the value of vm.gpu_passthrough.
    assert_eq!(body["vm_gpu_enabled"], true);
    assert_eq!(body["security_notice"]["level"], "info");
    assert_eq!(body["security_notice"]["title"], "Running on bare metal");
    let details = notice_details(&body);
    assert_eq!(details.len(), 1);
    assert!(
        details[0].contains("bare metal with full hardware isolation"),
        "{details:?}"
    );
}

#[tokio::test]
async fn bare_metal_without_gpu_disabled() {
    let body = vm_status("cases/a05-ec2-metal-unprivileged", true).await;

    assert_eq!(body["is_vm"], false);
    assert_eq!(body["vm_gpu_enabled"], false);
}

#[tokio::test]
async fn container_on_bare_metal_warns() {
    let mut detection = detect_fixture(&fixture("vm/bare-metal-server"));
    detection.container = Container::Docker;
    let state = Arc::new(state_with(detection, Config::default()));

    let (_, body) = call(state, Method::GET, "/api/vm/status").await;

    assert_eq!(body["is_vm"], false);
    assert_eq!(body["hypervisor"], "none");
    assert_eq!(body["security_notice"]["level"], "warning");
    assert_eq!(
        body["security_notice"]["title"],
        "Running in a container (docker)"
    );
}

#[tokio::test]
async fn vm_status_unknown_hypervisor() {
    let body = vm_status("vm/hypervisor-bit-only", false).await;

    assert_shape(&body);
    assert_eq!(body["is_vm"], true);
    assert_eq!(body["hypervisor"], "vm-other");
    assert_eq!(body["security_notice"]["level"], "warning");
    assert_eq!(
        body["security_notice"]["title"],
        "Running in a Virtual Machine (vm-other)"
    );
}

#[tokio::test]
async fn vm_status_wsl_mentions_container() {
    let body = vm_status("cases/a07-wsl2-kernel-strings/scenario-A", false).await;

    assert_shape(&body);
    assert_eq!(body["hypervisor"], "microsoft");
    let details = notice_details(&body);
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("wsl container")),
        "{details:?}"
    );
}

#[tokio::test]
async fn health_unavailable_without_inference() {
    let (status, body) = call(state("vm/kvm-q35", false), Method::GET, "/api/health").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["detail"], "inference is not running");
}

#[tokio::test]
async fn health_ok_once_model_ready() {
    let script = fixture("cases/d01-stream-chunk-shape/backend/hello.json");
    let mut state = Arc::into_inner(state("vm/kvm-q35", false)).expect("sole owner");
    let settings = EngineSettings {
        choice: EngineChoice::Scripted(script),
        models: state.config.models.clone(),
        context_tokens: 4096,
        threads: 1,
        gpu_layers: 0,
        import_device: PathBuf::from("/nonexistent"),
    };
    state.engine = Some(settings);
    state.start_inference();
    let mut states = state.inference().expect("started").subscribe();
    states
        .wait_for(|state| matches!(state, ServiceState::Ready(_)))
        .await
        .expect("service ready");

    let (status, body) = call(Arc::new(state), Method::GET, "/api/health").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({ "status": "ok", "model": "hello" })
    );
}

#[tokio::test]
async fn health_names_missing_script() {
    let mut state = Arc::into_inner(state("vm/kvm-q35", false)).expect("sole owner");
    let settings = EngineSettings {
        choice: EngineChoice::Scripted(fixture(
            "cases/d01-stream-chunk-shape/backend/missing.json",
        )),
        models: state.config.models.clone(),
        context_tokens: 4096,
        threads: 1,
        gpu_layers: 0,
        import_device: PathBuf::from("/nonexistent"),
    };
    state.engine = Some(settings);
    state.start_inference();
    let mut states = state.inference().expect("started").subscribe();
    states
        .wait_for(|state| matches!(state, ServiceState::Unavailable(_)))
        .await
        .expect("service unavailable");

    let (status, body) = call(Arc::new(state), Method::GET, "/api/health").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("missing.json"), "{detail}");
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let (status, body) = call(state("vm/kvm-q35", false), Method::GET, "/api/nope").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["status"], 404);
    assert_eq!(body["error"]["message"], "no route for /api/nope");
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let (status, body) = call(state("vm/kvm-q35", false), Method::POST, "/api/vm/status").await;

    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["status"], 405);
}

#[tokio::test]
async fn boot_status_shape() {
    let (status, body) = call(state("vm/kvm-q35", false), Method::GET, "/api/boot/status").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["secure_boot"], "enforcing");
    assert_eq!(body["tpm"]["present"], true);
    assert_eq!(body["tpm"]["version"], "2");
    assert_eq!(body["tpm"]["device"], "/dev/tpmrm0");
}

#[tokio::test]
async fn boot_measurements_missing_is_503() {
    let (status, body) = call(
        state("vm/kvm-q35", false),
        Method::GET,
        "/api/boot/measurements",
    )
    .await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("unverified"));
}

#[tokio::test]
async fn boot_measurements_report_returned() {
    use appliance_agent::measurements::verify::{Check, CheckStatus};
    use appliance_agent::measurements::MeasurementReport;

    let mut state = Arc::into_inner(state("vm/kvm-q35", false)).expect("sole owner");
    state.measurements = Some(MeasurementReport::from_checks(vec![Check {
        name: "pcr15_unused".to_owned(),
        status: CheckStatus::Passed,
        summary: "zero".to_owned(),
        mismatches: Vec::new(),
    }]));

    let (status, body) = call(Arc::new(state), Method::GET, "/api/boot/measurements").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["verdict"], "verified");
    assert_eq!(body["bank"], "sha256");
    assert_eq!(body["checks"][0]["name"], "pcr15_unused");
    assert_eq!(body["checks"][0]["status"], "passed");
}

#[tokio::test]
async fn vm_status_reports_facts() {
    use appliance_agent::hardening::{Category, Finding, Report, SharedFolder};
    use appliance_agent::vm_facts::{judge_tpm, Sizing};

    let state = state("vm/kvm-q35", false);
    {
        let mut facts = state.facts.write().expect("facts lock");
        facts.hardening = Report {
            clipboard_agents: Vec::new(),
            host_channels: vec![Finding {
                agent: "qemu-guest-agent".to_owned(),
                category: Category::HostChannel,
                what: "qemu-guest-agent (guest-exec)".to_owned(),
                pid: Some(640),
                user: None,
                source: None,
            }],
            shared_folders: vec![SharedFolder {
                mount_point: "/mnt/host".to_owned(),
                fs_type: "virtiofs".to_owned(),
                source: "share".to_owned(),
            }],
            actions: Vec::new(),
        };
        facts.tpm = judge_tpm(Some("IBM".to_owned()), true);
        facts.sizing = Sizing {
            vcpus: 2,
            memory_mib: 2048,
            warnings: vec!["The VM has 2 vCPUs; allocate at least 4.".to_owned()],
        };
    }

    let (status, body) = call(state, Method::GET, "/api/vm/status").await;

    assert_eq!(status, StatusCode::OK);
    let body = body.as_object().expect("object").clone();
    assert_shape(&body);
    assert_eq!(body["hardening"]["host_channels"][0]["pid"], 640);
    assert_eq!(
        body["hardening"]["shared_folders"][0]["fs_type"],
        "virtiofs"
    );
    assert_eq!(body["tpm"]["manufacturer"], "IBM");
    assert_eq!(body["tpm"]["looks_virtual"], true);
    assert_eq!(body["sizing"]["vcpus"], 2);
    let details = notice_details(&body);
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("qemu-guest-agent (guest-exec)")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|detail| detail.contains("/mnt/host")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("manufacturer IBM")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|detail| detail.contains("2 vCPUs")),
        "{details:?}"
    );
}

#[tokio::test]
async fn openapi_paths_all_routed() {
    let spec: Value =
        serde_norway::from_str(include_str!("../openapi.yaml")).expect("openapi.yaml is YAML");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 6, "{:?}", paths.keys());

    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let method: Method = method.to_uppercase().parse().expect("HTTP method");
            let (status, body) = call(state("vm/kvm-q35", false), method.clone(), path).await;
            assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
}
