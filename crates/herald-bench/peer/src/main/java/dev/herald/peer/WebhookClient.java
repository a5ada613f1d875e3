package dev.herald.peer;

import java.net.URI;
import java.net.http.HttpClient;
import java.time.Instant;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.springframework.beans.factory.DisposableBean;
import org.springframework.http.HttpStatus;
import org.springframework.http.HttpStatusCode;
import org.springframework.http.MediaType;
import org.springframework.http.client.JdkClientHttpRequestFactory;
import org.springframework.scheduling.concurrent.CustomizableThreadFactory;
import org.springframework.stereotype.Component;
import org.springframework.util.StringUtils;
import org.springframework.web.client.ResourceAccessException;
import org.springframework.web.client.RestClient;

/**
 * POSTs an event body to the endpoint, signed the Standard Webhooks way, and turns the
 * outcome into a verdict: return on 2xx, {@link DeliveryException} when a retry may help,
 * {@link PermanentDeliveryException} when it cannot.
 */
@Component
public class WebhookClient implements DisposableBean {

	private final URI url;

	private final ExecutorService executor;

	private final RestClient restClient;

	private final WebhookSigner signer;

	public WebhookClient(PeerProperties properties) {
		this.url = properties.url();
		CustomizableThreadFactory threads = new CustomizableThreadFactory("http-");
		threads.setDaemon(true);
		// Shared by the JDK client and Spring's request-body writer, which would otherwise
		// start a new thread per request (SimpleAsyncTaskExecutor).
		this.executor = Executors.newCachedThreadPool(threads);
		HttpClient httpClient = HttpClient.newBuilder()
			.version(HttpClient.Version.HTTP_1_1) // no h2c upgrade attempt on plain http
			.connectTimeout(properties.timeout())
			.executor(this.executor)
			.build();
		JdkClientHttpRequestFactory requestFactory = new JdkClientHttpRequestFactory(httpClient);
		requestFactory.setReadTimeout(properties.timeout());
		this.restClient = RestClient.builder()
			.requestFactory(requestFactory)
			.defaultHeader("user-agent", "herald-peer")
			.build();
		this.signer = StringUtils.hasText(properties.secret()) ? new WebhookSigner(properties.secret()) : null;
	}

	public void deliver(String id, byte[] body) {
		long timestamp = Instant.now().getEpochSecond();
		try {
			this.restClient.post()
				.uri(this.url)
				.contentType(MediaType.APPLICATION_JSON)
				.headers((headers) -> {
					headers.set("webhook-id", id);
					headers.set("webhook-timestamp", Long.toString(timestamp));
					if (this.signer != null) {
						headers.set("webhook-signature", this.signer.sign(id, timestamp, body));
					}
				})
				.body(body)
				.retrieve()
				.onStatus((status) -> !status.is2xxSuccessful(), (request, response) -> {
					throw verdict(id, response.getStatusCode());
				})
				.toBodilessEntity();
		}
		catch (ResourceAccessException ex) { // connection refused/reset, timeouts
			throw new DeliveryException("event " + id + ": " + ex.getMessage(), ex);
		}
	}

	private static RuntimeException verdict(String id, HttpStatusCode status) {
		String message = "event " + id + ": HTTP " + status.value();
		boolean retryable = status.is5xxServerError() || status.isSameCodeAs(HttpStatus.REQUEST_TIMEOUT)
				|| status.isSameCodeAs(HttpStatus.TOO_MANY_REQUESTS);
		return retryable ? new DeliveryException(message) : new PermanentDeliveryException(message);
	}

	@Override
	public void destroy() {
		this.executor.shutdownNow();
	}

}
