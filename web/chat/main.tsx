import { mount } from '../mount.js';
import { ChatApp } from './chat-app.js';

mount(ChatApp);
