package dev.herald.peer;

import java.util.Iterator;
import java.util.List;

import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.retrytopic.RetryTopicConfiguration;
import org.springframework.kafka.retrytopic.RetryTopicConfigurationBuilder;
import org.springframework.util.backoff.BackOff;
import org.springframework.util.backoff.BackOffExecution;

/**
 * Non-blocking retries: a failed record is republished to a retry topic per delay
 * ({@code <topic>-retry-<delay ms>}), whose consumer pauses the partition until the record
 * is due; after the last attempt, or at once for a permanent failure, it goes to
 * {@code <topic>-dlt}.
 */
@Configuration(proxyBeanMethods = false)
public class RetryTopicsConfig {

	@Bean
	public RetryTopicConfiguration webhookRetryTopics(KafkaTemplate<?, ?> kafkaTemplate, PeerProperties peer) {
		return RetryTopicConfigurationBuilder.newInstance()
			.includeTopic(peer.topic())
			.maxAttempts(peer.attempts())
			.customBackoff(new DelayListBackOff(peer.backoffMs()))
			.notRetryOn(PermanentDeliveryException.class)
			.autoCreateTopicsWith(peer.concurrency(), (short) 1)
			.concurrency(peer.concurrency())
			.dltHandlerMethod("eventForwarder", "onDeadLetter")
			.create(kafkaTemplate);
	}

	/**
	 * The given delays in order, one per retry; the last repeats if there are more retries
	 * than delays. (The builder's own options only express fixed or exponential back-off.)
	 */
	record DelayListBackOff(List<Long> delays) implements BackOff {

		@Override
		public BackOffExecution start() {
			Iterator<Long> next = this.delays.iterator();
			return new BackOffExecution() {

				private long current;

				@Override
				public long nextBackOff() {
					if (next.hasNext()) {
						this.current = next.next();
					}
					return this.current;
				}

			};
		}

	}

}
