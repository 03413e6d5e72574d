import { mount } from '../mount.js';
import { EmbedApp } from './embed-app.js';

mount(EmbedApp);
