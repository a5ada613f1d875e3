package dev.herald.peer;

import java.nio.charset.StandardCharsets;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.json.JsonMapper;

import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.stereotype.Component;
import org.springframework.util.StringUtils;

/**
 * Consumes the events topic (and, through the retry-topic configuration, its retry topics)
 * and POSTs each record value unchanged to the webhook endpoint.
 */
@Component
public class EventForwarder {

	private static final Logger logger = LoggerFactory.getLogger(EventForwarder.class);

	private final WebhookClient webhook;

	private final JsonMapper jsonMapper;

	public EventForwarder(WebhookClient webhook, JsonMapper jsonMapper) {
		this.webhook = webhook;
		this.jsonMapper = jsonMapper;
	}

	@KafkaListener(id = "herald-peer", topics = "${peer.topic}", groupId = "${peer.group}")
	public void onEvent(ConsumerRecord<String, byte[]> record) {
		byte[] body = record.value();
		this.webhook.deliver(eventId(body), body);
	}

	/** Dead-letter handler (see {@link RetryTopicsConfig}): no re-processing, just a trace. */
	public void onDeadLetter(ConsumerRecord<String, byte[]> record) {
		if (logger.isDebugEnabled()) {
			Header reason = record.headers().lastHeader(KafkaHeaders.EXCEPTION_MESSAGE);
			logger.debug("dead letter {}-{}@{} key={}: {}", record.topic(), record.partition(), record.offset(),
					record.key(), (reason != null) ? new String(reason.value(), StandardCharsets.UTF_8) : "?");
		}
	}

	private String eventId(byte[] body) {
		CloudEventId event;
		try {
			event = this.jsonMapper.readValue(body, CloudEventId.class);
		}
		catch (JacksonException ex) {
			throw new PermanentDeliveryException("record value is not a JSON CloudEvent", ex);
		}
		if (event == null || !StringUtils.hasText(event.id())) {
			throw new PermanentDeliveryException("CloudEvent without an id");
		}
		return event.id();
	}

	@JsonIgnoreProperties(ignoreUnknown = true)
	record CloudEventId(String id) {
	}

}
