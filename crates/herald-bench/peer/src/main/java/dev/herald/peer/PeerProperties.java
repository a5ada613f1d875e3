package dev.herald.peer;

import java.net.URI;
import java.time.Duration;
import java.util.List;

import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.boot.context.properties.bind.DefaultValue;

/**
 * {@code peer.*} settings.
 *
 * @param topic the events topic
 * @param group the consumer group id (retry and dead-letter consumers add the topic suffix)
 * @param url the webhook endpoint
 * @param secret Standard Webhooks signing secret ({@code whsec_<base64>}); unsigned when empty
 * @param concurrency consumers per listener container, and partitions of the retry topics
 * @param timeoutMs HTTP connect timeout and request (response) timeout
 * @param attempts total delivery attempts, including the first
 * @param backoffMs delay before each retry (attempt 2, 3, ...); the last one repeats
 */
@ConfigurationProperties("peer")
public record PeerProperties(
		String topic,
		String group,
		URI url,
		String secret,
		@DefaultValue("1") int concurrency,
		@DefaultValue("5000") long timeoutMs,
		@DefaultValue("3") int attempts,
		@DefaultValue({ "1000", "5000" }) List<Long> backoffMs) {

	public PeerProperties {
		if (topic == null || topic.isBlank() || group == null || group.isBlank() || url == null) {
			throw new IllegalArgumentException("peer.topic, peer.group and peer.url are required");
		}
		if (concurrency < 1 || attempts < 1 || timeoutMs < 1 || backoffMs.isEmpty()) {
			throw new IllegalArgumentException(
					"peer.concurrency, peer.attempts and peer.timeout-ms must be positive, peer.backoff-ms non-empty");
		}
		backoffMs = List.copyOf(backoffMs);
	}

	public Duration timeout() {
		return Duration.ofMillis(this.timeoutMs);
	}

}
