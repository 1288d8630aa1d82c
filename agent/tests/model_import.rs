//! Import of models from a tar archive on the import disk into an empty
//! models folder, with the same checks as any model file.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use appliance_agent::config::ModelsConfig;
use appliance_agent::inference::import::{import_models, ImportError, ImportOutcome};
use appliance_agent::inference::model_file;
use support::gguf_writer::GgufFile;

/// Writes a ustar archive with the given (name, bytes) entries. Names go
/// into the header as they are, so a test can write unsafe ones.
fn write_archive(path: &Path, entries: &[(&str, &[u8])]) {
    let mut builder = tar::Builder::new(fs::File::create(path).expect("create archive"));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *bytes).expect("append entry");
    }
    builder.finish().expect("finish archive");
}

fn models_config(dir: &Path) -> ModelsConfig {
    ModelsConfig {
        dir: dir.to_owned(),
        ..ModelsConfig::default()
    }
}

struct Scene {
    _scratch: tempfile::TempDir,
    device: PathBuf,
    models: ModelsConfig,
}

fn scene(entries: &[(&str, &[u8])]) -> Scene {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let device = scratch.path().join("models.tar");
    write_archive(&device, entries);
    let models = models_config(&scratch.path().join("models"));
    Scene {
        _scratch: scratch,
        device,
        models,
    }
}

#[test]
fn model_imported_byte_for_byte() {
    let model = GgufFile::default().build();
    let scene = scene(&[("README.txt", b"not a model"), ("tiny.gguf", &model)]);

    let outcome = import_models(&scene.device, &scene.models).expect("import");

    let target = scene.models.dir.join("tiny.gguf");
    assert_eq!(outcome, ImportOutcome::Imported(vec![target.clone()]));
    assert_eq!(fs::read(&target).expect("imported file"), model);
    let listed = model_file::list_models(&scene.models.dir).expect("list");
    assert_eq!(listed, vec![target]);
    assert!(!scene.models.dir.join("README.txt").exists());
}

#[test]
fn second_import_leaves_models_alone() {
    let model = GgufFile::default().build();
    let scene = scene(&[("tiny.gguf", &model)]);
    import_models(&scene.device, &scene.models).expect("first import");

    let outcome = import_models(&scene.device, &scene.models).expect("second import");

    assert_eq!(outcome, ImportOutcome::ModelsPresent);
}

#[test]
fn missing_device_does_nothing() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let models = models_config(&scratch.path().join("models"));

    let outcome = import_models(&scratch.path().join("absent"), &models).expect("import");

    assert_eq!(outcome, ImportOutcome::NoDevice);
    assert!(!models.dir.exists());
}

#[test]
fn unsafe_names_skipped() {
    let model = GgufFile::default().build();
    let scene = scene(&[
        ("../escape.gguf", &model),
        ("sub/nested.gguf", &model),
        (".hidden.gguf", &model),
    ]);

    let err = import_models(&scene.device, &scene.models).expect_err("nothing importable");

    assert!(matches!(err, ImportError::NothingImported { .. }), "{err}");
    let parent = scene.models.dir.parent().expect("parent");
    assert!(!parent.join("escape.gguf").exists());
    assert!(model_file::list_models(&scene.models.dir)
        .expect("list")
        .is_empty());
}

#[test]
fn invalid_model_removed() {
    let mut broken = GgufFile::default().build();
    broken.truncate(broken.len() - 1);
    let scene = scene(&[("broken.gguf", &broken)]);

    let err = import_models(&scene.device, &scene.models).expect_err("invalid model");

    assert!(
        err.to_string().contains("no *.gguf file that passed"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&scene.models.dir)
        .expect("read models folder")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn pinned_digest_mismatch_removed() {
    let model = GgufFile::default().build();
    let mut scene = scene(&[("tiny.gguf", &model)]);
    scene
        .models
        .sha256
        .insert("tiny.gguf".to_owned(), "0".repeat(64));

    let err = import_models(&scene.device, &scene.models).expect_err("digest differs");

    assert!(matches!(err, ImportError::NothingImported { .. }), "{err}");
    assert!(!scene.models.dir.join("tiny.gguf").exists());
}

#[test]
fn missing_vault_folder_reported() {
    let model = GgufFile::default().build();
    let mut scene = scene(&[("tiny.gguf", &model)]);
    scene.models.dir = scene.models.dir.join("not-mounted/models");

    let err = import_models(&scene.device, &scene.models).expect_err("no parent folder");

    assert!(matches!(err, ImportError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("vault is open"), "{err}");
}
