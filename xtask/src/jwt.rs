//! ES256 JSON Web Tokens as the CNCF distribution registry verifies them in
//! `auth: token` mode.
//!
//! The issuer makes a fresh P-256 key and a self-signed certificate per run.
//! Each token's header names the certificate in `x5c`; the registry gets the
//! same certificate as its `rootcertbundle`, so the one-certificate chain
//! verifies. JWS ES256 signatures are the fixed 64-byte `r || s` form, which
//! is what ring's `ECDSA_P256_SHA256_FIXED_SIGNING` produces.

use crate::cmd::Error;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

/// The issuer's signing identity: a P-256 key pair and its self-signed
/// certificate (the registry's trust root).
pub(crate) struct SigningKey {
    key_pair: EcdsaKeyPair,
    certificate_der: Vec<u8>,
    certificate_pem: String,
    rng: SystemRandom,
}

impl SigningKey {
    /// Generates a new key and a self-signed certificate for `common_name`.
    pub(crate) fn generate(common_name: &str) -> Result<Self, Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("generating the issuer key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec![common_name.to_owned()])
            .map_err(|e| format!("certificate parameters: {e}"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let certificate = params
            .self_signed(&key)
            .map_err(|e| format!("self-signing the issuer certificate: {e}"))?;
        let rng = SystemRandom::new();
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .map_err(|e| format!("loading the issuer key into ring: {e}"))?;
        Ok(SigningKey {
            key_pair,
            certificate_der: certificate.der().to_vec(),
            certificate_pem: certificate.pem(),
            rng,
        })
    }

    /// The certificate in PEM, for the registry's `rootcertbundle`.
    pub(crate) fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The public key as an uncompressed SEC1 point (65 bytes).
    #[cfg(test)]
    pub(crate) fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.key_pair.public_key().as_ref()
    }

    /// The JOSE header of every token: ES256, and the certificate in `x5c`.
    fn header(&self) -> Value {
        json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.certificate_der)],
        })
    }

    /// Signs `claims` into a compact JWS: `header.claims.signature`, each
    /// part base64url without padding.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, Error> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(self.header().to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key_pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| format!("signing a token: {e}"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Fills `n` bytes from the system's random source, as lowercase hex.
    pub(crate) fn random_hex(&self, n: usize) -> Result<String, Error> {
        let mut bytes = vec![0u8; n];
        ring::rand::SecureRandom::fill(&self.rng, &mut bytes)
            .map_err(|e| format!("reading random bytes: {e}"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn decode_json(part: &str) -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url without padding");
        serde_json::from_slice(&bytes).expect("a JSON object")
    }

    #[test]
    fn token_has_es256_header_with_the_certificate_and_the_claims() {
        let key = SigningKey::generate("test-issuer").expect("key generation");
        let claims = json!({"iss": "test-issuer", "access": []});
        let token = key.sign(&claims).expect("signing");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS has three parts: {token}");

        let header = decode_json(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        let x5c = header["x5c"].as_array().expect("x5c is an array");
        assert_eq!(x5c.len(), 1);
        let der = STANDARD
            .decode(x5c[0].as_str().expect("x5c entries are strings"))
            .expect("x5c uses standard base64");
        let pem_body: String = key
            .certificate_pem()
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert_eq!(STANDARD.decode(pem_body).expect("pem body"), der);

        assert_eq!(decode_json(parts[1]), claims);
    }

    #[test]
    fn signature_is_fixed_64_bytes_and_verifies_with_the_public_key() {
        let key = SigningKey::generate("test-issuer").expect("key generation");
        let token = key.sign(&json!({"sub": "x"})).expect("signing");
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        assert_eq!(signature.len(), 64, "ES256 is r || s, 32 bytes each");

        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key());
        public
            .verify(signing_input.as_bytes(), &signature)
            .expect("the signature verifies");
        let tampered = signing_input.replacen('.', ".e", 1);
        assert!(public.verify(tampered.as_bytes(), &signature).is_err());
    }

    #[test]
    fn random_hex_has_the_asked_length_and_varies() {
        let key = SigningKey::generate("test-issuer").expect("key generation");
        let a = key.random_hex(16).expect("random");
        let b = key.random_hex(16).expect("random");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
