//! The agent's TPM token against systemd 257's on one swtpm: the agent unseals the token that
//! systemd-cryptenroll enrolled, systemd's plugin does not unseal the agent's, and neither
//! unseals on a PCR 11 value that was not signed.
//!
//! These tests need systemd 257's cryptsetup tools (systemd-cryptenroll and the
//! `systemd-tpm2` token plugin) and run only inside the bench tools tree: a plain
//! `cargo test` skips them as ignored, and `make test-vault-interop` runs them.

mod support;

use support::pcr_policy::{context, extend};
use support::vault_interop::DualVault;
use tss_esapi::handles::PcrHandle;

/// The `expect` message of a failed set-up, which usually means the test ran outside the
/// bench tools tree.
const NEEDS_BENCH_TOOLS: &str =
    "enrolling the agent's and systemd's tokens (run inside the bench tools tree: `make test-vault-interop`)";

/// systemd 257 loads a sealed object under its persistent SRK when the token names one
/// ("tpm2_srk"), and otherwise under a primary key made from its legacy template, whose
/// attributes lack noDA. The agent writes no "tpm2_srk" and seals under the TCG SRK template,
/// which sets noDA, so systemd derives another parent and the TPM rejects the object
/// (TPM_RC_INTEGRITY on Load). This test fails once the agent's tokens become loadable there.
#[test]
#[ignore = "needs systemd 257's cryptsetup tools: run `make test-vault-interop`"]
fn systemd_rejects_the_agent_token() {
    let vault = DualVault::create().expect(NEEDS_BENCH_TOOLS);
    vault
        .unlock_with_agent(vault.agent_token)
        .expect("the agent unseals its own token");

    let error = vault
        .unlock_with_systemd(vault.agent_token)
        .expect_err("systemd's plugin cannot load the agent's sealed object");

    assert!(
        error.to_string().contains("os error 131"),
        "systemd reports a TPM failure (ENOTRECOVERABLE), not a missing token or plugin: {error:#}"
    );
}

#[test]
#[ignore = "needs systemd 257's cryptsetup tools: run `make test-vault-interop`"]
fn agent_unseals_the_systemd_token() {
    let vault = DualVault::create().expect(NEEDS_BENCH_TOOLS);
    let systemd_keyslot = vault
        .unlock_with_systemd(vault.systemd_token)
        .expect("systemd's plugin unseals its own token");

    let opened = vault
        .unlock_with_agent(vault.systemd_token)
        .expect("the agent unseals systemd's token");

    assert_eq!(opened, systemd_keyslot);
    let token = vault
        .token_json(vault.systemd_token)
        .expect("systemd's token");
    assert!(
        token.get("tpm2_srk").is_some(),
        "systemd 257 records its storage root key: {token}"
    );
}

#[test]
#[ignore = "needs systemd 257's cryptsetup tools: run `make test-vault-interop`"]
fn neither_unseals_an_unsigned_pcr11() {
    let vault = DualVault::create().expect(NEEDS_BENCH_TOOLS);
    let mut tpm = context(&vault.swtpm);
    extend(&mut tpm, PcrHandle::Pcr11, b"a UKI nobody signed");
    drop(tpm);

    for token in [vault.agent_token, vault.systemd_token] {
        assert!(
            vault.unlock_with_agent(token).is_err(),
            "the agent unsealed token {token} on an unsigned PCR 11"
        );
        assert!(
            vault.unlock_with_systemd(token).is_err(),
            "systemd unsealed token {token} on an unsigned PCR 11"
        );
    }
}
