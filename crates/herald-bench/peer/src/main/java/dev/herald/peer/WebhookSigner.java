package dev.herald.peer;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.Base64;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Standard Webhooks signature: {@code v1,base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))},
 * the key being the base64-decoded part of the {@code whsec_} secret.
 */
public final class WebhookSigner {

	private static final String PREFIX = "whsec_";

	private final SecretKeySpec key;

	public WebhookSigner(String secret) {
		String encoded = secret.startsWith(PREFIX) ? secret.substring(PREFIX.length()) : secret;
		this.key = new SecretKeySpec(Base64.getDecoder().decode(encoded), "HmacSHA256");
	}

	public String sign(String id, long timestamp, byte[] body) {
		try {
			Mac mac = Mac.getInstance("HmacSHA256");
			mac.init(this.key);
			mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
			return "v1," + Base64.getEncoder().encodeToString(mac.doFinal(body));
		}
		catch (GeneralSecurityException ex) {
			throw new IllegalStateException("HmacSHA256 unavailable", ex);
		}
	}

}
